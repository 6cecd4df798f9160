/**
 * An in-memory {@link Journal}: the same semantics as the libSQL journal (epoch fencing,
 * expected-seq checks, atomic appends, idempotency retention, reminders), kept in maps.
 * Nothing survives the process; use it for tests and single-process demos.
 *
 * @module
 */

import { ClosedError } from "../errors.ts";
import { systemClock } from "../util/clock.ts";
import {
  type Append,
  type Claim,
  type CommittedEvent,
  IDEMPOTENCY_RETENTION,
  type Journal,
  type OutboxMessage,
  type Owned,
  type Recovered,
  type Reminder,
  type Snapshot,
  type StoredEvent,
  type StoredReply,
} from "./types.ts";
import {
  staleEpoch,
  unexpectedSeq,
  validateAppend,
  validateClaim,
  validateFeedRead,
} from "./validate.ts";

/** Options of {@link memoryJournal}. */
export interface MemoryJournalOptions {
  /**
   * How many idempotency records are kept per actor, and for how long.
   * @default {IDEMPOTENCY_RETENTION}
   */
  readonly retention?: { readonly maxAgeMs: number; readonly maxPerActor: number };
  /**
   * The wall clock used to timestamp idempotency records (ms since the epoch): a system's
   * clock's `now` (`createSystem({ clock })` gives it to the journal it makes itself).
   * @default {systemClock.now}
   */
  readonly now?: () => number;
}

interface ActorLog {
  epoch: number;
  /** The node recorded as the owner, if any. */
  owner?: string;
  events: StoredEvent[];
  snapshot?: Snapshot;
  /** key → record; Map order is insertion order, i.e. oldest first. */
  replies: Map<string, { reply: Uint8Array; fingerprint: string; at: number }>;
}

/**
 * Makes an in-memory journal. Every call settles asynchronously, like a real database.
 *
 * Idempotency records: at most `retention.maxPerActor` per actor (oldest dropped first);
 * records older than `retention.maxAgeMs` are dropped when the actor next stores one.
 *
 * @example
 * ```ts
 * import { memoryJournal } from "./memory.ts";
 * import { isOwned } from "./types.ts";
 * const journal = memoryJournal();
 * const rec = await journal.activate("account/alice");
 * if (isOwned(rec)) throw new Error("activate() without a claim is never refused");
 * const { epoch, seq } = rec;
 * const data = new TextEncoder().encode("{}");
 * await journal.append({
 *   actor: "account/alice",
 *   epoch,
 *   expectedSeq: seq,
 *   events: [{ type: "deposited", version: 1, data, at: Date.now() }],
 * });
 * await journal.close();
 * ```
 */
export function memoryJournal(options: MemoryJournalOptions = {}): Journal {
  const retention = options.retention ?? IDEMPOTENCY_RETENTION;
  const now = options.now ?? systemClock.now;
  const logs = new Map<string, ActorLog>();
  const reminders = new Map<string, Reminder>();
  /** Outbox messages not yet forwarded, in commit order. */
  const outbox = new Map<string, OutboxMessage>();
  /** Every event in commit order: position n is at index n - 1. */
  const committed: { actor: string; event: StoredEvent }[] = [];
  /**
   * The highest epoch of a record forgotten on release (see `release`): a record made again
   * starts above it, so an actor's epochs still only grow.
   */
  let epochFloor = 0;
  let closed = false;

  function check(what: string): void {
    if (closed) throw new ClosedError(`Cannot ${what}: the memory journal is closed`);
  }

  function log(actor: string): ActorLog {
    let l = logs.get(actor);
    if (!l) {
      l = { epoch: epochFloor, events: [], replies: new Map() };
      logs.set(actor, l);
    }
    return l;
  }

  function head(l: ActorLog): number {
    return l.events.length === 0 ? 0 : l.events[l.events.length - 1]!.seq;
  }

  return {
    async activate(actor: string, claim?: Claim): Promise<Recovered | Owned> {
      validateClaim(actor, claim);
      await Promise.resolve();
      check(`activate ${JSON.stringify(actor)}`);
      const l = log(actor);
      if (
        claim && l.owner !== undefined && l.owner !== claim.node && l.owner !== claim.takeOver
      ) {
        return { owner: l.owner, epoch: l.epoch };
      }
      l.epoch++;
      if (claim) l.owner = claim.node;
      else delete l.owner;
      const from = l.snapshot?.seq ?? 0;
      const rec: Recovered = {
        epoch: l.epoch,
        events: l.events.filter((e) => e.seq > from).map(copyEvent),
        seq: head(l),
        ...(l.snapshot ? { snapshot: copySnapshot(l.snapshot) } : {}),
      };
      return rec;
    },

    async append(a: Append): Promise<void> {
      validateAppend(a);
      check(`append to ${JSON.stringify(a.actor)}`);
      await Promise.resolve();
      const l = logs.get(a.actor);
      const epoch = l?.epoch ?? 0;
      const seq = l ? head(l) : 0;
      if (!l || a.epoch !== epoch) throw staleEpoch(a, epoch);
      if (a.expectedSeq !== seq) throw unexpectedSeq(a, seq);
      // Everything below cannot fail: the write is atomic.
      let s = seq;
      for (const e of a.events) {
        const event = {
          seq: ++s,
          type: e.type,
          version: e.version,
          data: e.data.slice(),
          at: e.at,
        };
        l.events.push(event);
        committed.push({ actor: a.actor, event });
      }
      if (a.snapshot) l.snapshot = copySnapshot(a.snapshot);
      if (a.idempotency) {
        const t = now();
        const { key, reply, fingerprint } = a.idempotency;
        l.replies.delete(key);
        l.replies.set(key, { reply: reply.slice(), fingerprint, at: t });
        for (const [k, r] of l.replies) {
          if (l.replies.size > retention.maxPerActor || r.at < t - retention.maxAgeMs) {
            l.replies.delete(k);
          } else break;
        }
      }
      for (const id of a.cancelReminders ?? []) reminders.delete(id);
      for (const r of a.reminders ?? []) reminders.set(r.id, copyReminder(r));
      for (const m of a.outbox ?? []) outbox.set(m.id, { ...m, data: m.data.slice() });
    },

    async release(actor: string, node: string, epoch: number): Promise<void> {
      await Promise.resolve();
      check(`release ${JSON.stringify(actor)}`);
      const l = logs.get(actor);
      if (!l || l.owner !== node || l.epoch !== epoch) return;
      delete l.owner;
      // An actor that never stored anything (an actor without events, say) leaves no trace:
      // a node that activated a hundred thousand of them keeps no record of each.
      if (l.events.length === 0 && !l.snapshot && l.replies.size === 0) {
        logs.delete(actor);
        if (l.epoch > epochFloor) epochFloor = l.epoch;
      }
    },

    async owner(actor: string): Promise<Owned | undefined> {
      await Promise.resolve();
      check(`read the owner of ${JSON.stringify(actor)}`);
      const l = logs.get(actor);
      return l?.owner === undefined ? undefined : { owner: l.owner, epoch: l.epoch };
    },

    async read(actor: string, from: number, limit: number): Promise<StoredEvent[]> {
      await Promise.resolve();
      check(`read ${JSON.stringify(actor)}`);
      const events = logs.get(actor)?.events ?? [];
      // seq n is at index n - 1 (no gaps).
      const start = Math.max(0, from - 1);
      return events.slice(start, start + Math.max(0, limit)).map(copyEvent);
    },

    async reply(actor: string, key: string): Promise<StoredReply | undefined> {
      await Promise.resolve();
      check(`read a reply of ${JSON.stringify(actor)}`);
      const r = logs.get(actor)?.replies.get(key);
      return r && { reply: r.reply.slice(), fingerprint: r.fingerprint };
    },

    async pruneIdempotency(at: number): Promise<void> {
      await Promise.resolve();
      check("prune idempotency records");
      for (const l of logs.values()) {
        for (const [k, r] of l.replies) {
          if (l.replies.size > retention.maxPerActor || r.at < at - retention.maxAgeMs) {
            l.replies.delete(k);
          } else break;
        }
      }
    },

    shards: 1,

    shardOf(actor: string): number {
      if (typeof actor !== "string" || actor === "") {
        throw new TypeError(`shardOf() needs an actor key, got ${String(actor)}`);
      }
      return 0;
    },

    async readCommitted(shard: number, after: number, limit: number): Promise<CommittedEvent[]> {
      validateFeedRead(1, shard, after, limit);
      await Promise.resolve();
      check("read committed events");
      const start = Math.max(0, Math.floor(after));
      return committed.slice(start, start + limit).map(({ actor, event }, i) => ({
        ...copyEvent(event),
        actor,
        position: start + i + 1,
      }));
    },

    async dueReminders(at: number, limit: number): Promise<Reminder[]> {
      await Promise.resolve();
      check("read due reminders");
      return [...reminders.values()]
        .filter((r) => r.due <= at)
        .sort(byDue)
        .slice(0, Math.max(0, limit))
        .map(copyReminder);
    },

    async nextReminder(): Promise<number | undefined> {
      await Promise.resolve();
      check("read the next reminder");
      let next: number | undefined;
      for (const r of reminders.values()) if (next === undefined || r.due < next) next = r.due;
      return next;
    },

    async deleteReminder(id: string): Promise<void> {
      await Promise.resolve();
      check(`delete reminder ${JSON.stringify(id)}`);
      reminders.delete(id);
    },

    async rescheduleReminder(id: string, fromDue: number, toDue: number): Promise<void> {
      await Promise.resolve();
      check(`reschedule reminder ${JSON.stringify(id)}`);
      const r = reminders.get(id);
      if (r && r.due === fromDue) reminders.set(id, { ...r, due: toDue });
    },

    async readOutbox(shard: number, limit: number): Promise<OutboxMessage[]> {
      validateFeedRead(1, shard, 0, limit);
      await Promise.resolve();
      check("read the outbox");
      return [...outbox.values()].slice(0, limit).map((m) => ({ ...m, data: m.data.slice() }));
    },

    async deleteOutbox(shard: number, ids: readonly string[]): Promise<void> {
      validateFeedRead(1, shard, 0, 0);
      await Promise.resolve();
      check("delete from the outbox");
      for (const id of ids) outbox.delete(id);
    },

    close(): Promise<void> {
      closed = true;
      return Promise.resolve();
    },
  };
}

function byDue(a: Reminder, b: Reminder): number {
  return a.due - b.due || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function copyEvent(e: StoredEvent): StoredEvent {
  return { seq: e.seq, type: e.type, version: e.version, data: e.data.slice(), at: e.at };
}

function copySnapshot(s: Snapshot): Snapshot {
  return { seq: s.seq, version: s.version, state: s.state.slice() };
}

function copyReminder(r: Reminder): Reminder {
  return {
    id: r.id,
    actor: r.actor,
    handler: r.handler,
    data: r.data.slice(),
    due: r.due,
    ...(r.trace === undefined ? {} : { trace: r.trace }),
    ...(r.caller === undefined ? {} : { caller: r.caller.slice() }),
    ...(r.cron === undefined ? {} : { cron: r.cron }),
    ...(r.name === undefined ? {} : { name: r.name }),
  };
}
