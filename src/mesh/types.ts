/**
 * The Mesh port: what Troupe needs from a message fabric. It is deliberately NATS-shaped
 * (subjects, request/reply, queue groups, a key-value store with compare-and-set and watches)
 * so that the NATS adapter is thin, while the in-process mesh implements the same semantics
 * in memory. Routing, placement, membership, ownership and leases are written once in the
 * core on top of this port.
 *
 * Subjects are dot-separated tokens. Subscriptions may use wildcards: `*` matches exactly one
 * token, `>` (last token only) matches one or more tokens.
 *
 * @module
 */

import type { Clock } from "../util/clock.ts";

/** Message headers: a flat string map. Header names are case-sensitive. */
export type MeshHeaders = Record<string, string>;

/** A message delivered to a subscription. */
export interface MeshMessage {
  /** The subject it was published to. */
  readonly subject: string;
  /** The headers (empty object when none). */
  readonly headers: MeshHeaders;
  /** The body. */
  readonly data: Uint8Array;
  /** The reply subject, when the sender expects a reply. */
  readonly reply?: string;
}

/** Options of {@link MeshConnection.publish}. */
export interface PublishOptions {
  /** Headers to send. */
  headers?: MeshHeaders;
  /** Reply subject. */
  reply?: string;
}

/**
 * A request's cancel hook: {@link MeshConnection.request} sets `cancel` while the request
 * waits (and clears it once it settled). Calling it rejects the request with `reason`. A
 * cheaper {@link RequestOptions.signal} for callers that keep their own registry of requests.
 */
export interface RequestHandle {
  /** Rejects the waiting request with `reason`; set by the mesh while it waits. */
  cancel?: ((reason: unknown) => void) | undefined;
}

/** Options of {@link MeshConnection.request}. */
export interface RequestOptions {
  /** Headers to send. */
  headers?: MeshHeaders;
  /** Milliseconds to wait for the first reply. */
  timeout: number;
  /** Aborts the wait: the request then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Receives the request's cancel function while it waits. */
  handle?: RequestHandle;
}

/** Options of {@link MeshConnection.subscribe}. */
export interface SubscribeOptions {
  /** Queue group: each message goes to one member of the group. */
  queue?: string;
}

/** A live subscription. */
export interface MeshSubscription {
  /** The subject (possibly with wildcards) subscribed to. */
  readonly subject: string;
  /** Stops delivery (messages received but not yet handled are dropped). Idempotent. */
  unsubscribe(): void;
  /**
   * Stops new messages, handles those already on their way (sent before the server saw the
   * unsubscribe), then resolves: nothing sent while the subscription was live is dropped.
   */
  drain(): Promise<void>;
}

/** Why a mesh call failed. */
export type MeshErrorCode = "no_responders" | "timeout" | "closed" | "kv_conflict" | "max_payload";

/**
 * An error of the mesh port.
 *
 * @example
 * ```ts
 * import { MeshError } from "@troupe/troupe/spi";
 * const err = new MeshError("no_responders", "No node listens on troupe.n.api-1.account");
 * if (err.code === "no_responders") console.log("try another node");
 * ```
 */
export class MeshError extends Error {
  /** What went wrong. */
  readonly code: MeshErrorCode;
  /**
   * Makes a mesh error.
   *
   * @param code What went wrong.
   * @param message Details.
   * @param cause The underlying error.
   */
  constructor(code: MeshErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "MeshError";
    this.code = code;
  }
}

/** Connection status changes, for logs and for fencing decisions. */
export type MeshStatus =
  | { type: "disconnect"; server?: string }
  | { type: "reconnect"; server?: string }
  | { type: "error"; error: unknown };

/**
 * A connection of one node to the mesh.
 *
 * Semantics every implementation keeps (checked by the conformance suite in
 * `src/mesh/conformance.ts`):
 * - messages from one publisher to one subscription arrive in publish order;
 * - `request` resolves with the first reply, rejects with `MeshError("no_responders")`
 *   at once when no subscription matches, `MeshError("timeout")` after `timeout` ms;
 * - a queue group delivers each message to exactly one of its members; plain subscriptions
 *   each get their own copy;
 * - handlers are called asynchronously (never inside `publish`), one message at a time per
 *   subscription;
 * - a subscription is known to the whole mesh once a later `flush()` resolves (before that,
 *   messages from other connections may miss it);
 * - after `close()` resolves, every call except `close()` throws (or rejects with)
 *   `MeshError("closed")`, and the node's own requests still in flight reject with it.
 */
export interface MeshConnection {
  /** Largest message the mesh carries, in bytes (body plus encoded headers, as on NATS). */
  readonly maxPayload: number;
  /** Sends a message. Fire and forget; throws `MeshError("closed")` after close. */
  publish(subject: string, data: Uint8Array, options?: PublishOptions): void;
  /** Sends a request and waits for the first reply. */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<MeshMessage>;
  /** Subscribes `handler` to `subject` (wildcards allowed). */
  subscribe(
    subject: string,
    handler: (msg: MeshMessage) => void,
    options?: SubscribeOptions,
  ): MeshSubscription;
  /** A fresh unique subject to receive replies or stream frames on. */
  inbox(): string;
  /** Resolves once everything published so far has reached the server. */
  flush(): Promise<void>;
  /** Opens (creating when missing) a key-value bucket. */
  kv(bucket: string, options?: KvOptions): Promise<KvBucket>;
  /**
   * Deletes a key-value bucket with all its keys (for operators' tools and tests: Troupe
   * itself never deletes a bucket). Handles opened before keep working on a bucket of the same
   * name created later, as on NATS; until then their calls fail. Optional: a mesh may not
   * offer it.
   */
  deleteKv?(bucket: string): Promise<void>;
  /** Registers a status listener; returns a function that removes it. */
  onStatus(listener: (status: MeshStatus) => void): () => void;
  /**
   * Durable topics: a store of messages with named consumers that acknowledge what they
   * handled (see {@link DurableTopics}). Optional: a mesh may not offer it; durable pub/sub
   * then fails with a clear error. The same object on every call.
   */
  durableTopics?(): DurableTopics;
  /** Closes the connection: drains subscriptions, then disconnects. Idempotent. */
  close(): Promise<void>;
}

/**
 * A mesh: what `createSystem({ mesh })` takes. `connect` is called once per system (node).
 *
 * @example
 * ```ts
 * import { createSystem } from "@troupe/troupe";
 * import { meshConformance, type Mesh } from "@troupe/troupe/spi";
 * declare function myMesh(): Mesh; // your adapter: connect() gives a MeshConnection per node
 * meshConformance("my mesh", () =>
 *   Promise.resolve({ mesh: myMesh(), cleanup: () => Promise.resolve() }));
 * const system = await createSystem({ mesh: myMesh() });
 * await system.close();
 * ```
 */
export interface Mesh {
  /** A short name for logs: "in-process", "nats". */
  readonly kind: string;
  /** Default lease time-to-live for membership and ownership, in ms. */
  readonly leaseTtl: number;
  /** First token of every Troupe subject and of bucket names. @default {"troupe"} */
  readonly prefix: string;
  /**
   * Connects one node. `clock` is the node's clock (`createSystem({ clock })`): a mesh whose
   * timers are its own (the in-process one: request timeouts) runs them on it; one whose
   * timers follow a real network (NATS) may ignore it.
   */
  connect(
    options: { node: string; signal?: AbortSignal; clock?: Clock },
  ): Promise<MeshConnection>;
}

/** Options of a key-value bucket. */
export interface KvOptions {
  /** How many revisions per key to keep. @default {1} */
  history?: number;
  /** Replicas (NATS cluster size permitting). @default {1} */
  replicas?: number;
}

/** One incarnation of a bucket: see {@link KvBucket.incarnationNow}. */
export interface KvIncarnation {
  /** The incarnation id, in the format of {@link KvBucket.incarnation}. */
  readonly id: string;
  /**
   * When this incarnation was created: ms since the Unix epoch on the server's clock (NATS:
   * the stream's `created`). A bucket created again later has a larger value, as long as the
   * server clocks do not step back by more than the lifetime of the older incarnation.
   */
  readonly createdAt: number;
}

/** One revision of a key. */
export interface KvEntry {
  /** The key. */
  readonly key: string;
  /** The value (empty for deletes). */
  readonly value: Uint8Array;
  /** Revision: strictly increasing across the whole bucket. */
  readonly revision: number;
  /** What happened to the key. */
  readonly operation: "PUT" | "DEL" | "PURGE";
}

/**
 * A watch: an async iterable of changes; `stop()` ends it, and so does closing the
 * connection it was made on.
 *
 * Revisions arrive in increasing order and the latest revision of every key is always
 * delivered. A bucket keeps `history` values per key (1 by default), so a revision that is
 * superseded before a slow watcher reads it (say a put followed at once by a delete) may be
 * skipped: watchers see the latest state, not necessarily every step.
 */
export interface KvWatch extends AsyncIterable<KvEntry> {
  /** Ends the iteration (a pending `next()` resolves as done). Idempotent. */
  stop(): void;
  /**
   * Resolves once the watch is established on the server: every change written after that
   * is seen. Matters with `initial: false`. Optional for compatibility; awaiting
   * `undefined` is fine.
   */
  readonly ready?: Promise<void>;
}

/**
 * A key-value bucket with compare-and-set. Keys are dot-separated tokens of
 * `[A-Za-z0-9_=-]`; `keys` and `watch` take NATS wildcards.
 */
export interface KvBucket {
  /** The bucket's name. */
  readonly name: string;
  /**
   * An id of this incarnation of the bucket: revisions restart when a bucket is recreated,
   * so fencing tokens combine the two.
   */
  readonly incarnation: string;
  /**
   * Reads the bucket's current incarnation from the server. It differs from
   * {@link KvBucket.incarnation} once the bucket was deleted and created again (this handle
   * then reads and writes the new one). Rejects with `MeshError("no_responders")` while the
   * bucket does not exist.
   */
  incarnationNow(): Promise<KvIncarnation>;
  /**
   * Whether compare-and-set (`create`, `update`) is serialized: two writers expecting the same
   * revision can never both succeed. `false` on replicated buckets of nats-server before 2.9.21
   * (nats-server #4320): callers that need exclusivity then check their write afterwards.
   */
  readonly serializedCas: boolean;
  /**
   * The current entry (authoritative: not from a possibly stale replica), or null when the
   * key is missing or its latest operation is a delete/purge.
   */
  get(key: string): Promise<KvEntry | null>;
  /** Writes a value unconditionally; returns its revision. */
  put(key: string, value: Uint8Array): Promise<number>;
  /** Writes only if the key does not exist (or was deleted); else `MeshError("kv_conflict")`. */
  create(key: string, value: Uint8Array): Promise<number>;
  /** Writes only if the key's latest revision is `revision`; else `MeshError("kv_conflict")`. */
  update(key: string, value: Uint8Array, revision: number): Promise<number>;
  /** Deletes a key; with `revision`, only if that is still its latest revision. */
  delete(key: string, options?: { revision?: number }): Promise<void>;
  /** The keys that exist now (deleted ones excluded), matching `filter` (default `>`). */
  keys(filter?: string): Promise<string[]>;
  /**
   * Watches changes of keys matching `key` (default `>`). With `initial: true` (the default)
   * it first yields the latest entry of every existing matching key (nothing for keys whose
   * latest operation is a delete), then live changes (deletes included), in revision order.
   */
  watch(options?: { key?: string; initial?: boolean }): KvWatch;
}

// ---------------------------------------------------------------------------------------
// Durable topics: an optional capability of a connection.

/** Options of {@link DurableTopics.publish}. */
export interface DurablePublishOptions {
  /** Headers stored with the message. */
  headers?: MeshHeaders;
  /**
   * Deduplication id: a second message with the same id published within the store's
   * duplicate window is not stored again (its receipt says `duplicate: true`). On NATS it is
   * the `Nats-Msg-Id` header. At most 128 characters.
   */
  id?: string;
}

/** What {@link DurableTopics.publish} resolves with once the message is stored. */
export interface DurableReceipt {
  /** Its position in the store: strictly increasing per store. */
  readonly seq: number;
  /** Whether an earlier message with the same id was stored instead (nothing new stored). */
  readonly duplicate: boolean;
}

/** Where a named consumer created now starts (a consumer that exists keeps its place). */
export type DurableStart = "all" | "new" | Date;

/** What {@link DurableTopics.consumer} creates or joins. */
export interface DurableConsumerConfig {
  /** The consumer's name, unique per store: `[A-Za-z0-9_-]`, at most 64 characters. */
  readonly name: string;
  /** Subjects it receives (wildcards allowed), under `<prefix>.d.`. */
  readonly filter: string;
  /**
   * Where a consumer created now starts: every message stored (`"all"`), only those stored
   * after it was created (`"new"`), or those stored at or after a time.
   */
  readonly from: DurableStart;
  /**
   * Ms a delivered message may stay unsettled (no `ack`, `nak`, `term` nor `working` call)
   * before it is delivered again.
   */
  readonly ackWait: number;
  /** A note for operators (NATS: the consumer's description). */
  readonly description?: string;
}

/**
 * A message delivered by a named consumer. Exactly one of `ack`, `nak` or `term` settles it;
 * until then it counts against the consumption's `maxInFlight` and, once `ackWait` passes
 * without a call, it is delivered again (to this or another consumption of the consumer).
 */
export interface DurableMessage {
  /** The subject it was published to. */
  readonly subject: string;
  /** The headers it was stored with (the dedup id header included on NATS). */
  readonly headers: MeshHeaders;
  /** The body. */
  readonly data: Uint8Array;
  /** Its position in the store. */
  readonly seq: number;
  /** How many times it was delivered to this consumer, this one included (1 the first time). */
  readonly deliveries: number;
  /** When it was stored, ms since the Unix epoch (the store's clock). */
  readonly storedAt: number;
  /** The deduplication id it was published with, if any. */
  readonly id?: string;
  /** Handled: the consumer never delivers it again. */
  ack(): void;
  /** Not handled: deliver it again after `delay` ms (at once when 0 or omitted). */
  nak(delay?: number): void;
  /** Never deliver it again (without it counting as handled). */
  term(): void;
  /** Still being handled: restarts its `ackWait`. */
  working(): void;
}

/** A running consumption of a named consumer: see {@link DurableConsumer.consume}. */
export interface DurableConsumption {
  /**
   * Stops receiving: no message is delivered to the handler after this resolves. Messages
   * already delivered stay the handler's to settle (unsettled ones come back after
   * `ackWait`). Idempotent.
   */
  stop(): Promise<void>;
  /** Settles once the consumption ended: after `stop()`, or when its connection closed. */
  readonly closed: Promise<void>;
}

/** A named consumer of a {@link DurableTopics} store: shared by every consumption of it. */
export interface DurableConsumer {
  /** Its name. */
  readonly name: string;
  /**
   * Delivers messages to `handler`, each message to one consumption of the consumer (of any
   * node), at most `maxInFlight` unsettled ones to this consumption at once. Messages come in
   * store order the first time; a message delivered again comes when it is due, after later
   * ones. The handler is called asynchronously, never inside `consume`.
   */
  consume(
    handler: (msg: DurableMessage) => void,
    options: { maxInFlight: number },
  ): DurableConsumption;
}

/**
 * Durable topics (optional capability of a {@link MeshConnection}): a store of the messages
 * published to subjects under `<prefix>.d.` (the mesh's prefix), kept by its limits (age,
 * size), and named consumers that each receive every stored message matching their filter,
 * at least once: a message goes to one consumption of a consumer at a time and comes back
 * until it is acknowledged or terminated. On NATS: one JetStream stream per prefix and durable
 * pull consumers; in process: memory shared by the connections of one mesh.
 *
 * Semantics every implementation keeps (checked by `durableTopicsConformance`):
 * - `publish` resolves once the message is stored; a message with the `id` of one stored
 *   within the duplicate window is not stored again;
 * - stored messages are also published on the mesh (plain subscribers of the subject get
 *   them, at most once, like any message);
 * - a consumer receives the messages stored from its start on, matching its filter, in store
 *   order; `nak`ed messages and those not settled within `ackWait` come again with
 *   `deliveries` one higher; `ack`ed and `term`ed ones never do;
 * - a consumer lives on with its position when no consumption runs, and outlives the
 *   connections that used it (on NATS, the server's restarts too).
 */
export interface DurableTopics {
  /**
   * Stores a message; resolves once it is stored.
   *
   * @example
   * ```ts
   * import { inProcessMesh } from "./in_process.ts";
   * const conn = await inProcessMesh().connect({ node: "n1" });
   * const store = conn.durableTopics!();
   * const { seq } = await store.publish("troupe.d.orders", new Uint8Array([1]), { id: "o-1" });
   * const consumer = await store.consumer({
   *   name: "billing",
   *   filter: "troupe.d.>",
   *   from: "all",
   *   ackWait: 30_000,
   * });
   * const run = consumer.consume((msg) => {
   *   console.log(msg.seq === seq, msg.deliveries); // true 1
   *   msg.ack();
   * }, { maxInFlight: 1 });
   * await run.stop();
   * await conn.close();
   * ```
   */
  publish(
    subject: string,
    data: Uint8Array,
    options?: DurablePublishOptions,
  ): Promise<DurableReceipt>;
  /**
   * Joins the named consumer, creating it when missing (from `config.from`). Rejects with a
   * `TypeError` when a consumer of that name exists with another filter.
   */
  consumer(config: DurableConsumerConfig): Promise<DurableConsumer>;
  /** Deletes a named consumer with its position (for operators' tools and tests). */
  deleteConsumer(name: string): Promise<void>;
}
