/**
 * The Journal port: per-actor event logs with snapshots, epoch fencing, idempotency records
 * and durable reminders. Implementations: {@link memoryJournal} (in `memory.ts`) and
 * `libsqlJournal` (in `adapters/libsql`). Both pass the conformance suite in
 * `src/journal/conformance.ts`.
 *
 * Actors are named by their key `"<type>/<id>"`. Payloads are opaque bytes: the core encodes
 * them (MessagePack) before they reach the journal.
 *
 * @module
 */

/** An event as stored. */
export interface StoredEvent {
  /** Position in the actor's log: 1, 2, 3, … without gaps. */
  readonly seq: number;
  /** Event type (the key in the definition's `events`). */
  readonly type: string;
  /** The version of the event's schema it was written with. */
  readonly version: number;
  /** Encoded payload. */
  readonly data: Uint8Array;
  /** Wall-clock time of the append, in ms since the epoch. */
  readonly at: number;
}

/** An event to append. */
export interface NewEvent {
  /** Event type. */
  readonly type: string;
  /** Schema version of the payload. */
  readonly version: number;
  /** Encoded payload. */
  readonly data: Uint8Array;
  /** Wall-clock time, ms since the epoch. */
  readonly at: number;
}

/** A snapshot of an actor's state after event `seq`. */
export interface Snapshot {
  /** The seq of the last event folded into `state`. */
  readonly seq: number;
  /** Format version of the encoded state (the definition's `snapshotVersion`). */
  readonly version: number;
  /** Encoded state. */
  readonly state: Uint8Array;
}

/** A durable reminder: `handler(payload)` is sent to `actor` at or after `due`. */
export interface Reminder {
  /** Unique id (also the idempotency key used when it fires). */
  readonly id: string;
  /** Target actor key `"<type>/<id>"`. */
  readonly actor: string;
  /** Handler name. */
  readonly handler: string;
  /** Encoded payload. */
  readonly data: Uint8Array;
  /** Wall-clock due time, ms since the epoch. */
  readonly due: number;
  /** Trace context of the turn that scheduled it (its turn links to it), when traced. */
  readonly trace?: string;
  /**
   * The identity that scheduled it, as verified then (encoded by the runtime; opaque to the
   * journal): the reminder runs with it, never with more. Absent: an anonymous caller.
   */
  readonly caller?: Uint8Array;
  /** A cron expression: after each run it is due again at the next time it names. */
  readonly cron?: string;
  /** Its name, when it was scheduled with one (its id is then derived from actor and name). */
  readonly name?: string;
}

/**
 * A message a turn publishes durably (`ctx.publish(topic, payload, { durable: true })`): stored
 * with the turn's events in the same commit (a transactional outbox), forwarded afterwards.
 */
export interface OutboxMessage {
  /** Unique id: the deduplication id of its publication. */
  readonly id: string;
  /** Topic. */
  readonly topic: string;
  /** Encoded payload. */
  readonly data: Uint8Array;
  /** Content type of `data`. */
  readonly contentType: string;
  /** Wall-clock time of the turn, ms since the epoch. */
  readonly at: number;
}

/** What an activation starts from. */
export interface Recovered {
  /** This activation's epoch: strictly greater than every earlier activation's. */
  readonly epoch: number;
  /** The latest snapshot, if any. */
  readonly snapshot?: Snapshot;
  /** Events after the snapshot (or all), in order. */
  readonly events: readonly StoredEvent[];
  /** Seq of the last event in the log (0 for an empty log). */
  readonly seq: number;
}

/** A node's claim on an actor, made with {@link Journal.activate}. */
export interface Claim {
  /** The claiming node's id. */
  readonly node: string;
  /** A recorded owner the claimer has found dead: the claim may replace exactly that owner. */
  readonly takeOver?: string;
}

/** The actor is owned by another node; nothing was written. */
export interface Owned {
  /** The owner's node id. */
  readonly owner: string;
  /** The owner's epoch (the record's revision: it only grows). */
  readonly epoch: number;
}

/**
 * Whether an activate result is a refusal.
 *
 * @example
 * ```ts
 * import { isOwned } from "./types.ts";
 * import { memoryJournal } from "./memory.ts";
 * const journal = memoryJournal();
 * await journal.activate("account/alice", { node: "n1" });
 * const r = await journal.activate("account/alice", { node: "n2" });
 * if (isOwned(r)) console.log(`owned by ${r.owner} at epoch ${r.epoch}`);
 * await journal.close();
 * ```
 */
export function isOwned(r: Recovered | Owned): r is Owned {
  return "owner" in r;
}

/**
 * The idempotency record of one call: its key (already scoped by caller), its encoded reply,
 * and a fingerprint of the call (its handler and a digest of its encoded payload).
 */
export interface IdempotencyRecord {
  /** The idempotency key. */
  readonly key: string;
  /** The encoded reply. */
  readonly reply: Uint8Array;
  /**
   * What the call was. A later call with the same key and another fingerprint is another
   * call: it is refused with `conflict`, never answered with this reply.
   */
  readonly fingerprint: string;
}

/** A stored reply, as {@link Journal.reply} finds it. */
export interface StoredReply {
  /** The encoded reply. */
  readonly reply: Uint8Array;
  /**
   * The fingerprint of the call that stored it; absent for a record written before
   * fingerprints were stored (such records expire with the retention).
   */
  readonly fingerprint?: string;
}

/** An event with its actor and its place in its shard's commit order. */
export interface CommittedEvent extends StoredEvent {
  /** Actor key `"<type>/<id>"`. */
  readonly actor: string;
  /**
   * Its place in the commit order of its shard: positive, strictly increasing with the order
   * in which events were committed (not necessarily contiguous). A reader that has seen
   * every event up to position `p` finds every later commit after `p`.
   */
  readonly position: number;
}

/** One atomic write of an activation: events, and what must be stored with them. */
export interface Append {
  /** Actor key. */
  readonly actor: string;
  /** The epoch of the writing activation; must still be the current one. */
  readonly epoch: number;
  /** Seq of the last event the writer has seen; the new events get `expectedSeq + 1`, … */
  readonly expectedSeq: number;
  /** Events to append (may be empty when only a reply or reminders are stored). */
  readonly events: readonly NewEvent[];
  /** A snapshot to store (its `seq` ≤ the last appended seq). */
  readonly snapshot?: Snapshot;
  /** The idempotency record of the message (its key, encoded reply and fingerprint). */
  readonly idempotency?: IdempotencyRecord;
  /** Reminders scheduled by the handler (one with the id of a stored one replaces it). */
  readonly reminders?: readonly Reminder[];
  /** Ids of reminders the handler cancelled (deleted in the same commit; unknown ids ignored). */
  readonly cancelReminders?: readonly string[];
  /** Messages the handler published durably: stored in the same commit (the outbox). */
  readonly outbox?: readonly OutboxMessage[];
}

/**
 * Where an actor's events live. Every method may be called concurrently; implementations
 * serialize what must be serialized.
 *
 * @example
 * ```ts
 * import { createSystem, memoryJournal } from "@troupe/troupe";
 * import { type Journal, journalConformance } from "@troupe/troupe/spi";
 * const wrap = (inner: Journal): Journal => ({ ...inner }); // your adapter
 * journalConformance("my journal", () => Promise.resolve(wrap(memoryJournal())));
 * const system = await createSystem({ journal: wrap(memoryJournal()) });
 * await system.close();
 * ```
 */
export interface Journal {
  /**
   * Starts a new activation of `actor`: bumps its epoch and reads the latest snapshot and the
   * events after it, in one transaction.
   *
   * Without `claim`, the recorded owner becomes unknown (none). With `claim`, in one atomic
   * step: if the recorded owner is none, equal to `claim.node`, or equal to `claim.takeOver`,
   * the epoch is bumped, the owner becomes `claim.node` and the result is {@link Recovered};
   * otherwise the result is {@link Owned} (the owner and its epoch) and nothing is written.
   * Narrow the result with {@link isOwned}.
   */
  activate(actor: string, claim?: Claim): Promise<Recovered | Owned>;
  /**
   * Clears the recorded owner of `actor` if it is still `node` at `epoch` (a passivation);
   * otherwise does nothing. Idempotent; concurrent releases may share one transaction.
   */
  release(actor: string, node: string, epoch: number): Promise<void>;
  /** The recorded owner of `actor` (alive or not) and its epoch, or undefined when none is. */
  owner(actor: string): Promise<Owned | undefined>;
  /**
   * Appends atomically. Rejects with `ConflictError` (code `conflict`) when `epoch` is no
   * longer current or `expectedSeq` is not the last seq; nothing is written then. Resolves
   * only once the write is durable. Concurrent appends may share one transaction (group
   * commit) but each succeeds or fails on its own.
   *
   * Appends of one actor are applied in the order they were called: a writer may append
   * again before its previous append settled (its `expectedSeq` counting the events of the
   * earlier one), so a busy actor commits many turns per transaction. If an earlier append
   * fails, a later one that counted on its events fails its check.
   */
  append(append: Append): Promise<void>;
  /** Events of `actor` with `seq >= from`, in order, at most `limit` of them. */
  read(actor: string, from: number, limit: number): Promise<StoredEvent[]>;
  /**
   * The stored reply of an earlier message with this idempotency key, with the fingerprint
   * of that call, if remembered.
   */
  reply(actor: string, key: string): Promise<StoredReply | undefined>;
  /**
   * Drops idempotency records past the retention (older than its age, and the oldest of an
   * actor past its count). One node of a cluster calls it at intervals (the reminder
   * service's leader); a journal may also prune by itself where that costs nothing.
   */
  pruneIdempotency(now: number): Promise<void>;
  /**
   * How many shards the journal spreads actors over (1 without shards). Each shard has its
   * own commit order.
   */
  readonly shards: number;
  /** The shard (from 0) holding `actor`'s log, reminders, idempotency records and snapshot. */
  shardOf(actor: string): number;
  /**
   * Events of every actor of shard `shard` committed after `position` (0: from the start),
   * in commit order, at most `limit` of them: what an event feed follows. Events of one actor
   * come in seq order. A reader resumes after the last position it saw.
   */
  readCommitted(shard: number, after: number, limit: number): Promise<CommittedEvent[]>;
  /** Reminders due at or before `now`, oldest first, at most `limit`. */
  dueReminders(now: number, limit: number): Promise<Reminder[]>;
  /** The earliest due time of any reminder, or undefined when there is none. */
  nextReminder(): Promise<number | undefined>;
  /** Removes a reminder (after it fired). Idempotent. */
  deleteReminder(id: string): Promise<void>;
  /**
   * Moves a repeating reminder that fired at `fromDue` to `toDue`, only if it is still the same
   * one (its `due` is still `fromDue`: a reminder replaced or cancelled meanwhile is left alone).
   */
  rescheduleReminder(id: string, fromDue: number, toDue: number): Promise<void>;
  /** Up to `limit` outbox messages of shard `shard` not yet forwarded, oldest first. */
  readOutbox(shard: number, limit: number): Promise<OutboxMessage[]>;
  /** Forgets outbox messages once forwarded. Idempotent. */
  deleteOutbox(shard: number, ids: readonly string[]): Promise<void>;
  /** Waits for pending writes, then releases the database. Idempotent. */
  close(): Promise<void>;
}

/**
 * How long and how many idempotency records a journal keeps per actor.
 *
 * @example
 * ```ts
 * import { IDEMPOTENCY_RETENTION } from "@troupe/troupe/spi";
 * console.log(IDEMPOTENCY_RETENTION.maxPerActor, IDEMPOTENCY_RETENTION.maxAgeMs);
 * ```
 */
export const IDEMPOTENCY_RETENTION = {
  /** Records younger than this are always kept. */
  maxAgeMs: 24 * 60 * 60 * 1000,
  /** At most this many per actor (oldest dropped first). */
  maxPerActor: 1000,
} as const;
