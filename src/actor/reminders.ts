/**
 * The durable reminder service. Reminders are stored by the journal with the events of the
 * turn that scheduled them. One node of the cluster (elected through a lease) fires due
 * reminders as asks with the idempotency key `reminder:<id>`, so a reminder fired twice
 * (leader change, retry) is applied once; it is deleted once its handler ran.
 *
 * @module
 */

import { ActorError } from "../errors.ts";
import type { Journal } from "../journal/types.ts";
import type { Codec } from "../codec/types.ts";
import type { Leader } from "../directory/types.ts";
import type { Dispatcher } from "./ref.ts";
import type { Logger } from "./envelope.ts";
import type { ElectOptions } from "../directory/types.ts";

/** What the reminder service needs from its system. */
export interface ReminderHost {
  readonly journal: Journal;
  readonly storage: Codec;
  readonly dispatcher: Dispatcher;
  readonly log: Logger;
  readonly prefix: string;
  elect(name: string, options: ElectOptions): Leader;
}

const POLL_MS = 1000;
const RETRYABLE = new Set(["unavailable", "timeout", "closed", "overloaded"]);

/** Fires due reminders while this node is the elected reminder leader. */
export class Reminders {
  readonly #host: ReminderHost;
  #leader: Leader | undefined;
  #active = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #nextDue = Infinity;

  constructor(host: ReminderHost) {
    this.#host = host;
  }

  /** Stands for election; fires reminders while elected. */
  start(): void {
    this.#leader = this.#host.elect(`${this.#host.prefix}-reminders`, {
      onElected: () => {
        this.#active = true;
        this.#wake(0);
      },
      onRevoked: () => {
        this.#active = false;
        clearTimeout(this.#timer);
      },
    });
  }

  /** A reminder due at `due` (wall clock) was committed. */
  scheduled(due: number): void {
    if (this.#active && due < this.#nextDue) this.#wake(Math.max(0, due - Date.now()));
  }

  #wake(ms: number): void {
    clearTimeout(this.#timer);
    this.#nextDue = Date.now() + ms;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#nextDue = Infinity;
      if (!this.#running) {
        this.#running = this.#tick().finally(() => this.#running = undefined);
      }
    }, Math.min(ms, POLL_MS));
  }

  async #tick(): Promise<void> {
    const h = this.#host;
    let next = POLL_MS;
    try {
      const due = await h.journal.dueReminders(Date.now(), 100);
      await Promise.all(due.map((r) => this.#fire(r.id, r.actor, r.handler, r.data)));
      if (due.length === 100) next = 0;
      else {
        const at = await h.journal.nextReminder();
        if (at !== undefined) next = Math.max(0, Math.min(POLL_MS, at - Date.now()));
      }
    } catch (err) {
      h.log.warn("Reminder service: journal read failed", { error: String(err) });
    }
    if (this.#active) this.#wake(next);
  }

  async #fire(id: string, actor: string, handler: string, data: Uint8Array): Promise<void> {
    const h = this.#host;
    const slash = actor.indexOf("/");
    const type = actor.slice(0, slash);
    const actorId = actor.slice(slash + 1);
    try {
      const payload = h.storage.decode(data);
      await h.dispatcher.send(type, actorId, "ask", handler, payload, {
        idempotencyKey: `reminder:${id}`,
        timeout: 30_000,
      }, undefined);
    } catch (err) {
      if (err instanceof ActorError && RETRYABLE.has(err.code)) {
        h.log.debug("Reminder will be retried", { id, actor, error: err.message });
        return;
      }
      h.log.warn(`Reminder ${id} for ${actor}.${handler} failed; it is dropped`, {
        error: String(err),
      });
    }
    await h.journal.deleteReminder(id);
  }

  /** Stops firing and resigns. */
  async stop(): Promise<void> {
    this.#active = false;
    clearTimeout(this.#timer);
    await this.#running;
    await this.#leader?.resign();
  }
}
