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

/** An error of the mesh port. */
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
  /** Closes the connection: drains subscriptions, then disconnects. Idempotent. */
  close(): Promise<void>;
}

/**
 * A mesh: what `createSystem({ mesh })` takes. `connect` is called once per system (node).
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
