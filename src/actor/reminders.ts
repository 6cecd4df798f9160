/**
 * The durable reminder service. Reminders are stored by the journal with the events of the
 * turn that scheduled them. One node of the cluster (elected through a lease) fires due
 * reminders as asks with the idempotency key `reminder:<id>`, so a reminder fired twice
 * (leader change, retry) is applied once.
 *
 * The elected node also prunes the journal's idempotency records (at most every
 * {@link PRUNE_EVERY_MS}): one node of the cluster does it, not each of them.
 *
 * A reminder is deleted only once its ask succeeded. Any failure keeps it and retries it with
 * exponential backoff (from {@link RETRY_FIRST_MS} up to {@link RETRY_MAX_MS}, jittered):
 * failures are often transient in ways the error code cannot tell, such as
 * `unknown_actor_type` on a cluster that is starting (the elected node has not seen a host of
 * the type yet), or a handler's plain `Error` (code `internal`) while something it depends on
 * is down. A handler that wants to give up returns instead of throwing. The backoff is kept
 * in memory by the elected node: a new leader starts retrying at once.
 *
 * @module
 */

import { ActorError } from "../errors.ts";
import { nextCronRun } from "./cron.ts";
import type { Journal, Reminder } from "../journal/types.ts";
import type { Codec } from "../codec/types.ts";
import type { Leader } from "../directory/types.ts";
import type { Dispatcher } from "./ref.ts";
import type { Logger } from "./envelope.ts";
import type { Caller } from "./ref.ts";
import type { ElectOptions } from "../directory/types.ts";
import { withLink } from "../observe/tracing.ts";
import type { Clock, TimerId } from "../util/clock.ts";

/** What the reminder service needs from its system. */
export interface ReminderHost {
  readonly journal: Journal;
  readonly storage: Codec;
  readonly dispatcher: Dispatcher;
  readonly log: Logger;
  readonly prefix: string;
  /** The node's clock: reminders are due on its wall time, polled on its timers. */
  readonly clock: Clock;
  elect(name: string, options: ElectOptions): Leader;
  /**
   * A token (when the node has auth) for a message actor `from` sends itself on behalf of
   * `caller`, the identity that scheduled the reminder (as verified then): the reminder runs with
   * it, never with more. The access entry `"self"` lets an actor's own reminders in.
   */
  delegate?(caller: Caller | undefined, from: string): Promise<string>;
}

const POLL_MS = 1000;
/** Due reminders fired per poll. */
const BATCH = 100;
/** Delay before the first retry of a failed reminder, ms. */
export const RETRY_FIRST_MS = 250;
/** Longest delay between two retries of a failed reminder, ms. */
export const RETRY_MAX_MS = 60_000;
/** How often the elected node prunes idempotency records, ms. */
export const PRUNE_EVERY_MS = 60_000;
/** Failures that say nothing about the reminder itself: not warned about at once. */
const TRANSIENT = new Set(["unavailable", "timeout", "closed", "overloaded"]);
/** Refusals of the reminder's own identity: final. */
const REFUSED = new Set(["forbidden", "unauthorized"]);

/**
 * Delay before retry number `attempt` (from 1) of a failed reminder: exponential from
 * {@link RETRY_FIRST_MS}, capped at {@link RETRY_MAX_MS}, jittered down by up to a half.
 */
export function reminderRetryDelay(attempt: number, random = Math.random()): number {
  const base = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.max(0, attempt - 1));
  return base / 2 + random * base / 2;
}

interface Backoff {
  /** Failed attempts so far. */
  attempts: number;
  /** Wall-clock time (like `due`) before which it is not fired again. */
  retryAt: number;
}

/** Fires due reminders while this node is the elected reminder leader. */
export class Reminders {
  readonly #host: ReminderHost;
  /** Reminders that failed, by id. */
  readonly #backoff = new Map<string, Backoff>();
  #leader: Leader | undefined;
  #active = false;
  #timer: TimerId | undefined;
  #running: Promise<void> | undefined;
  #nextDue = Infinity;
  /** When this node last pruned idempotency records (monotonic ms); -Infinity: not yet. */
  #lastPrune = -Infinity;

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
        this.#host.clock.clearTimeout(this.#timer);
        this.#backoff.clear();
      },
    });
  }

  /** A reminder due at `due` (wall clock) was committed. */
  scheduled(due: number): void {
    if (this.#active && due < this.#nextDue) this.#wake(Math.max(0, due - this.#host.clock.now()));
  }

  #wake(ms: number): void {
    this.#host.clock.clearTimeout(this.#timer);
    this.#nextDue = this.#host.clock.now() + ms;
    this.#timer = this.#host.clock.setTimeout(() => {
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
      const now = this.#host.clock.now();
      // Those backing off are due too: read past them.
      const limit = BATCH + this.#backoff.size;
      const due = await h.journal.dueReminders(now, limit);
      if (due.length < limit) {
        // Every due reminder was read: forget the backoff of those gone (fired elsewhere).
        const ids = new Set(due.map((r) => r.id));
        for (const id of this.#backoff.keys()) if (!ids.has(id)) this.#backoff.delete(id);
      }
      const ready = due.filter((r) => (this.#backoff.get(r.id)?.retryAt ?? 0) <= now);
      await Promise.all(ready.slice(0, BATCH).map((r) => this.#fire(r)));
      if (ready.length > BATCH || due.length === limit) next = 0;
      else {
        const at = await h.journal.nextReminder();
        const later = this.#host.clock.now();
        if (at !== undefined && at > later) next = Math.min(next, at - later);
        for (const b of this.#backoff.values()) next = Math.min(next, b.retryAt - later);
        next = Math.max(0, next);
      }
    } catch (err) {
      h.log.warn("Reminder service: journal read failed", { error: String(err) });
    }
    if (this.#active && this.#host.clock.monotonic() - this.#lastPrune >= PRUNE_EVERY_MS) {
      this.#lastPrune = this.#host.clock.monotonic();
      try {
        await h.journal.pruneIdempotency(this.#host.clock.now());
      } catch (err) {
        h.log.warn("Reminder service: pruning idempotency records failed", { error: String(err) });
      }
    }
    if (this.#active) this.#wake(next);
  }

  async #fire(r: Reminder): Promise<void> {
    const h = this.#host;
    const slash = r.actor.indexOf("/");
    const type = r.actor.slice(0, slash);
    const actorId = r.actor.slice(slash + 1);
    try {
      const payload = h.storage.decode(r.data);
      const token = await h.delegate?.(reminderCaller(h.storage, r), r.actor);
      // Its trace links to the turn that scheduled it.
      await withLink(r.trace, () =>
        h.dispatcher.send(type, actorId, "ask", r.handler, payload, {
          // One run per due time: a repeating reminder's next run is another message.
          idempotencyKey: `reminder:${r.id}:${r.due}`,
          timeout: 30_000,
          ...(token !== undefined ? { token } : {}),
        }, undefined));
    } catch (err) {
      if (err instanceof ActorError && REFUSED.has(err.code)) {
        // The identity it was scheduled with may not run it: no retry would change that.
        h.log.warn(`Reminder ${r.id} for ${r.actor}.${r.handler} refused (${err.code}); dropped`, {
          error: err.message,
        });
        this.#backoff.delete(r.id);
        await h.journal.deleteReminder(r.id).catch(() => {});
        return;
      }
      const b = this.#backoff.get(r.id) ?? { attempts: 0, retryAt: 0 };
      b.attempts++;
      const wait = reminderRetryDelay(b.attempts);
      b.retryAt = this.#host.clock.now() + wait;
      this.#backoff.set(r.id, b);
      const code = err instanceof ActorError ? err.code : "internal";
      const data = {
        id: r.id,
        actor: r.actor,
        handler: r.handler,
        attempts: b.attempts,
        retryInMs: Math.round(wait),
        error: String(err),
      };
      // Warned at its first failure (unless transient), then about once a minute.
      const quiet = b.attempts > 1 || TRANSIENT.has(code);
      if (quiet && wait < RETRY_MAX_MS / 2) {
        h.log.debug(`Reminder ${r.id} for ${r.actor}.${r.handler} failed; will retry`, data);
      } else {
        h.log.warn(`Reminder ${r.id} for ${r.actor}.${r.handler} failed; will retry`, data);
      }
      return;
    }
    this.#backoff.delete(r.id);
    try {
      let next: number | undefined;
      try {
        // Its next run after now: runs missed while nobody fired them run once, not each.
        if (r.cron !== undefined) next = nextCronRun(r.cron, this.#host.clock.now());
      } catch (err) {
        h.log.warn(`Reminder ${r.id}: its cron expression names no next run; dropped`, {
          error: String(err),
        });
      }
      if (next !== undefined) await h.journal.rescheduleReminder(r.id, r.due, next);
      else await h.journal.deleteReminder(r.id);
    } catch (err) {
      // It fires again later; its idempotency key answers without applying it twice.
      h.log.warn(`Reminder ${r.id} ran but could not be deleted or moved`, {
        error: String(err),
      });
    }
  }

  /** Stops firing and resigns. */
  async stop(): Promise<void> {
    this.#active = false;
    this.#host.clock.clearTimeout(this.#timer);
    await this.#running;
    await this.#leader?.resign();
  }
}

/** The identity a reminder was scheduled with (undefined: an anonymous caller, or unreadable). */
function reminderCaller(storage: Codec, r: Reminder): Caller | undefined {
  if (r.caller === undefined) return undefined;
  try {
    const c = storage.decode(r.caller) as { sub?: unknown; roles?: unknown; claims?: unknown };
    if (typeof c?.sub !== "string" || c.sub === "") return undefined;
    return {
      sub: c.sub,
      roles: Array.isArray(c.roles) ? c.roles.filter((x) => typeof x === "string") : [],
      claims: typeof c.claims === "object" && c.claims !== null
        ? c.claims as Record<string, unknown>
        : {},
    };
  } catch {
    return undefined; // never more rights than it can prove
  }
}
