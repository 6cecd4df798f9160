/**
 * The transactional outbox: `ctx.publish(topic, payload, { durable: true })` stores the message
 * with the turn's events, in the same commit, and it is forwarded to its durable topic
 * afterwards — so it is published if and only if the turn commits, at least once.
 *
 * Two forwarders, one message id: the node whose turn committed forwards at once (low latency),
 * and one elected node sweeps every shard's outbox for what a node that died left behind
 * (messages older than {@link SWEEP_AFTER_MS}). Each message keeps its id as the deduplication
 * id of its publication (JetStream's `Nats-Msg-Id`, and the in-process store's equivalent), so a
 * message forwarded by both, or twice after a crash, is stored once within the store's window;
 * past that window a resend after a crash is a second delivery (at least once).
 *
 * @module
 */

import type { Logger } from "../actor/envelope.ts";
import type { ElectOptions, Leader } from "../directory/types.ts";
import type { Journal, OutboxMessage } from "../journal/types.ts";
import { delay } from "../util/async.ts";
import type { Clock } from "../util/clock.ts";

/** Publishes one stored message to its durable topic, with its id for deduplication. */
export type DurablePublish = (
  topic: string,
  data: Uint8Array,
  contentType: string,
  id: string,
) => Promise<void>;

/** What the outbox needs from its node. */
export interface OutboxHost {
  readonly journal: Journal;
  readonly log: Logger;
  readonly prefix: string;
  /** The node's clock (the sweep's age and its timer). */
  readonly clock: Clock;
  /** Durable publish (undefined: the mesh has no durable topics; messages wait). */
  readonly publish: DurablePublish | undefined;
  elect(name: string, options: ElectOptions): Leader;
}

/** Age after which the sweeper forwards a message its own node has not (that node died). */
export const SWEEP_AFTER_MS = 2_000;
const SWEEP_EVERY_MS = 1_000;
const SWEEP_BATCH = 256;

/** Forwarded ids of one shard waiting for their delete (see `Outbox.#forget`). */
interface Forgetting {
  ids: string[];
  /** The delete that takes the ids queued now, once the one running is done. */
  next: Promise<void> | undefined;
  running: Promise<void> | undefined;
}

/** The outbox forwarders of one node (see the module doc). */
export class Outbox {
  readonly #host: OutboxHost;
  #leader: Leader | undefined;
  #sweeping: AbortController | undefined;
  #loop: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  /** Per shard: forwarded ids waiting to be deleted, and the delete in flight. */
  readonly #forgetting = new Map<number, Forgetting>();

  constructor(host: OutboxHost) {
    this.#host = host;
  }

  /** Stands in the election of the sweeper. */
  start(): void {
    this.#leader = this.#host.elect(`${this.#host.prefix}-outbox`, {
      onElected: () => {
        const c = this.#sweeping = new AbortController();
        this.#loop = this.#sweepLoop(c.signal);
      },
      onRevoked: () => this.#sweeping?.abort(),
    });
  }

  /** A turn of `actor` committed these messages: forward them now. */
  forward(actor: string, messages: readonly OutboxMessage[]): void {
    const p = this.#forward(this.#host.journal.shardOf(actor), messages).finally(() =>
      this.#inFlight.delete(p)
    );
    this.#inFlight.add(p);
  }

  async #forward(shard: number, messages: readonly OutboxMessage[]): Promise<void> {
    const h = this.#host;
    if (!h.publish) return; // no durable topics on this mesh: the messages stay stored
    const done: string[] = [];
    for (const m of messages) {
      try {
        await h.publish(m.topic, m.data, m.contentType, m.id);
        done.push(m.id);
      } catch (err) {
        h.log.warn(`Outbox message to "${m.topic}" not forwarded yet; the sweep retries it`, {
          error: String(err),
        });
        break; // keep their order: the sweep resumes from the first not forwarded
      }
    }
    if (done.length > 0) await this.#forget(shard, done);
  }

  /**
   * Deletes forwarded messages: one delete in flight per shard, and the ids forwarded
   * meanwhile (by the turns committed together, typically) go in the next one, so each commit
   * carries one statement rather than one per turn.
   */
  #forget(shard: number, ids: readonly string[]): Promise<void> {
    let f = this.#forgetting.get(shard);
    if (!f) this.#forgetting.set(shard, f = { ids: [], next: undefined, running: undefined });
    const q = f;
    q.ids.push(...ids);
    return q.next ??= (async () => {
      await q.running;
      q.next = undefined;
      const batch = q.ids;
      q.ids = [];
      const h = this.#host;
      const run = q.running = h.journal.deleteOutbox(shard, batch).catch((err) =>
        h.log.debug("Outbox: forwarded messages not deleted yet", { error: String(err) })
      );
      await run;
      if (q.running === run) q.running = undefined;
    })();
  }

  async #sweepLoop(signal: AbortSignal): Promise<void> {
    const h = this.#host;
    while (!signal.aborted) {
      try {
        for (let s = 0; s < h.journal.shards && !signal.aborted; s++) {
          const old = h.clock.now() - SWEEP_AFTER_MS;
          const due = (await h.journal.readOutbox(s, SWEEP_BATCH)).filter((m) => m.at <= old);
          if (due.length > 0) await this.#forward(s, due);
        }
      } catch (err) {
        h.log.warn("Outbox sweep failed", { error: String(err) });
      }
      await delay(h.clock, SWEEP_EVERY_MS, signal).catch(() => {});
    }
  }

  /** Stops sweeping and waits for the forwards in flight. */
  async stop(): Promise<void> {
    this.#sweeping?.abort();
    await this.#loop;
    await Promise.allSettled([...this.#inFlight]);
    await this.#leader?.resign();
  }
}
