/**
 * Event feeds: every event of every actor of some types, in the order the journal committed
 * them, from an opaque position on, then live. The journal keeps a commit-order position per
 * shard (`readCommitted`); a feed reads each shard in that order, page by page in turn, and its
 * position is the vector of the last position read in each shard, so resuming after any event
 * neither skips nor repeats one: every actor lives in one shard, so its events come in seq
 * order.
 *
 * @module
 */

import { delay } from "../util/async.ts";
import { type Clock, systemClock } from "../util/clock.ts";
import type { Codec } from "../codec/types.ts";
import type { Journal } from "../journal/types.ts";
import { upcast } from "../journal/history.ts";
import type { ActorDefinition, AnyActorTypes } from "./define.ts";

/** One event of a feed. */
export interface FeedEvent<E = unknown> {
  /** Where the feed is after this event: pass it as `after` to resume behind it. Opaque. */
  readonly position: string;
  /** The actor's type. */
  readonly actorType: string;
  /** The actor's id. */
  readonly id: string;
  /** Its place in the actor's log. */
  readonly seq: number;
  /** The event type. */
  readonly type: string;
  /** The payload, upcast to the definition's current version. */
  readonly payload: E;
  /** When it was appended. */
  readonly at: Date;
}

/** Options of `system.feed()`. */
export interface FeedOptions {
  /** Resume after this position (from an event's `position`). @default {from the start} */
  after?: string | undefined;
  /** Keep following new events once every stored one was read. @default {true} */
  live?: boolean;
  /** Ends the feed. */
  signal?: AbortSignal;
  /** How often a caught-up feed looks for new events, ms. @default {200} */
  pollMs?: number;
  /** Events read per page of a shard. @default {500} */
  batch?: number;
}

const VERSION = "f1";

/**
 * Parses a feed position for a journal of `shards` shards (undefined: the start). Throws
 * `TypeError` for a string that is not one, or a position of a journal with another number
 * of shards.
 */
export function parsePosition(position: string | undefined, shards: number): number[] {
  if (position === undefined || position === "") return new Array(shards).fill(0);
  const parts = typeof position === "string" ? position.split(".") : [];
  const nums = parts.slice(1).map(Number);
  if (
    parts[0] !== VERSION || nums.length === 0 ||
    nums.some((n) => !Number.isSafeInteger(n) || n < 0)
  ) {
    throw new TypeError(`"${String(position).slice(0, 80)}" is not a feed position`);
  }
  if (nums.length !== shards) {
    throw new TypeError(
      `Feed position "${position}" is of a journal with ${nums.length} shards; this one has ${shards}`,
    );
  }
  return nums;
}

/** The opaque string of a feed position. */
export function formatPosition(positions: readonly number[]): string {
  return `${VERSION}.${positions.join(".")}`;
}

/**
 * The events of actors of the types of `defs`, from `options.after` on (see the module doc).
 *
 * An aborted `options.signal` ends it.
 *
 * @example
 * ```ts
 * import { memoryJournal } from "../journal/memory.ts";
 * import { msgpack } from "../codec/msgpack.ts";
 * import { defineActor } from "./define.ts";
 * import { readFeed } from "./feed.ts";
 * const Counter = defineActor({
 *   name: "counter",
 *   initialState: () => 0,
 *   events: { added: (n: number, by: number) => n + by },
 *   handlers: {},
 * });
 * const journal = memoryJournal();
 * for await (const e of readFeed(journal, msgpack, [Counter], { live: false })) {
 *   console.log(e.id, e.seq, e.type, e.payload, e.position);
 * }
 * await journal.close();
 * ```
 */
export async function* readFeed(
  journal: Journal,
  storage: Codec,
  // deno-lint-ignore no-explicit-any
  defs: readonly ActorDefinition<any>[],
  options: FeedOptions & { readonly clock?: Clock } = {},
): AsyncGenerator<FeedEvent> {
  const clock = options.clock ?? systemClock;
  const shards = journal.shards;
  const positions = parsePosition(options.after, shards);
  const byType = new Map<string, ActorDefinition<AnyActorTypes>>();
  for (const d of defs) byType.set(d.name, d as unknown as ActorDefinition<AnyActorTypes>);
  const batch = options.batch ?? 500;
  const pollMs = options.pollMs ?? 200;
  const signal = options.signal;
  if (!(batch >= 1)) throw new RangeError(`A feed's batch must be at least 1, got ${batch}`);
  // An aborted signal ends the feed (quietly: the one who aborted it knows why).
  while (!signal?.aborted) {
    let full = false;
    let read = 0;
    for (let s = 0; s < shards; s++) {
      if (signal?.aborted) return;
      const page = await journal.readCommitted(s, positions[s]!, batch);
      read += page.length;
      if (page.length === batch) full = true;
      for (const e of page) {
        positions[s] = e.position;
        const slash = e.actor.indexOf("/");
        const def = byType.get(e.actor.slice(0, slash));
        if (!def) continue;
        const payload = upcast(def, e.type, e.version, storage.decode(e.data));
        yield {
          position: formatPosition(positions),
          actorType: def.name,
          id: e.actor.slice(slash + 1),
          seq: e.seq,
          type: e.type,
          payload,
          at: new Date(e.at),
        };
        if (signal?.aborted) return;
      }
    }
    if (full || read > 0) continue; // more may be stored: read on before waiting
    if (options.live === false) return;
    await delay(clock, pollMs, signal).catch(() => {});
  }
}
