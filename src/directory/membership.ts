/**
 * Cluster membership on the Mesh key-value port: heartbeats, a live view of the nodes, and
 * self-fencing.
 *
 * Protocol (bucket `<prefix>_nodes`, key = `encodeToken(node id)`, value = JSON heartbeat):
 * - every node `put`s its heartbeat every `ttl / 3`; the first put is acknowledged before
 *   {@link startMembership} resolves, so a node is visible once it has started;
 * - every node watches the bucket. A node is alive from the first put this observer sees
 *   until `ttl + margin` passed without another one, timed on the observer's own monotonic
 *   clock (`clock.monotonic()`): expiry of keys tells watchers nothing on nats-server 2.9,
 *   and wall clocks of different machines are never compared;
 * - a graceful close puts a last heartbeat marked `leaving`, then deletes the key. Observers
 *   report the node `left` only when they saw that mark: any other disappearance (a `DEL`
 *   not preceded by the mark, which is how another node cleans up after a dead one) is
 *   reported `expired`. Why a mark and not "delete vs purge": the mark is positive proof
 *   written by the leaver itself, so everything else (a clean-up by any node, an operator's
 *   delete, an older node's clean-up during a rolling upgrade, a slow watcher that skipped
 *   the mark because the delete superseded it) falls on the safe side: `expired` makes the
 *   router route around the node's possibly stale subscriptions, `left` does not;
 * - a node's own lease holds until the time it *sent* its last acknowledged heartbeat + `ttl`
 *   ({@link Membership.validUntil}). Every observer that saw that heartbeat saw it later, so
 *   it declares the node dead at least `margin` after the node stopped itself. The margin
 *   absorbs timer lag and in-flight turns on the fenced node; the journal's epoch fence is
 *   the final authority on writes.
 *
 * @module
 */

import type { KvBucket, KvEntry, KvWatch, MeshConnection } from "../mesh/types.ts";
import { decodeToken, encodeToken } from "../mesh/subject.ts";
import { createEventQueue, type EventQueue } from "../util/queue.ts";
import { openDirectoryBucket } from "./_kv.ts";
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import type { DirectoryEvent, NodeInfo } from "./types.ts";

/** A change of membership, or of this node's own fencing state. */
export type MembershipEvent =
  | { readonly type: "node_joined"; readonly node: NodeInfo }
  | {
    readonly type: "node_left";
    readonly node: NodeInfo;
    /**
     * `"left"`: it announced a graceful close (only the node itself can); `"expired"`: it
     * died, seen first-hand (heartbeats stopped) or through its key being deleted by another
     * node's clean-up. Its NATS subscriptions may outlive an expired node.
     */
    readonly reason: "left" | "expired";
  }
  | {
    readonly type: "fenced";
    /** Why: a heartbeat failed, or the lease deadline passed without an acknowledged one. */
    readonly reason: "heartbeat_failed" | "expired";
    /** The error of the failed heartbeat, if any. */
    readonly error?: unknown;
  }
  | { readonly type: "unfenced" };

/** Liveness of a node as seen by this observer. */
export type NodeStatus =
  /** A heartbeat was seen less than `ttl + margin` ago. */
  | "alive"
  /** Seen and gone (expired or left), or never seen although observed for `ttl + margin`. */
  | "dead"
  /** Never seen, and this node has not been observing long enough to call it dead. */
  | "unknown";

/** Options of {@link startMembership}. */
export interface MembershipOptions {
  /** First part of the bucket name: the bucket is `<prefix>_nodes`. */
  prefix: string;
  /** This node. */
  node: NodeInfo;
  /** Heartbeat time to live in ms; heartbeats are sent every `ttl / 3`. */
  ttl: number;
  /**
   * Whether this node announces itself (heartbeats). `false`: observe only; the node is not
   * listed, and is never fenced (`validUntil()` is `Infinity`). @default {true}
   */
  hosts?: boolean;
  /**
   * Extra time, in ms, an observer waits after `ttl` before it declares a silent node dead.
   * Capped at 1 s, so a dead node is seen within `ttl + 1 s`.
   * @default {Math.min(1000, Math.max(250, ttl / 5))}
   */
  margin?: number;
  /** Replicas of the bucket. @default {1} */
  replicas?: number;
  /** Receives warnings (duplicate node id, own key deleted). @default {console.warn} */
  onWarning?: (message: string) => void;
  /** The clock heartbeats, expiry and the fence run on. @default {systemClock} */
  clock?: Clock;
}

/** A stream of directory events: an async iterable with `stop()`. */
export interface DirectoryWatch extends AsyncIterable<DirectoryEvent> {
  /** Ends the iteration. Idempotent. */
  stop(): void;
}

/**
 * This node's membership of the cluster.
 *
 * @example
 * ```ts
 * import { startMembership } from "./membership.ts";
 * import { inProcessMesh } from "../mesh/in_process.ts";
 * const conn = await inProcessMesh().connect({ node: "n1" });
 * const m = await startMembership(conn, {
 *   prefix: "troupe",
 *   node: { id: "n1", types: ["account"], since: Date.now() },
 *   ttl: 5_000,
 * });
 * m.on((e) => console.log(e.type));
 * console.log(m.nodes().map((n) => n.id)); // ["n1"]
 * await m.close();
 * await conn.close();
 * ```
 */
export interface Membership {
  /** This node. */
  readonly self: NodeInfo;
  /** Heartbeat time to live, ms. */
  readonly ttl: number;
  /** Margin added to `ttl` before a silent node is declared dead, ms. */
  readonly margin: number;
  /** The clock its times are on (`settledAt()`, `validUntil()`): the node's. */
  readonly clock: Clock;
  /** Live nodes (including this one, while it heartbeats), sorted by id. */
  nodes(): NodeInfo[];
  /** Whether node `id` is alive now, as far as this node knows. */
  isAlive(id: string): boolean;
  /** Liveness of node `id`, distinguishing "never heard of yet" from "dead". */
  status(id: string): NodeStatus;
  /**
   * Double-checks a death before acting on it (a take-over): `true` only if {@link status} is
   * `"dead"` and an authoritative read of the node's key shows no heartbeat newer than the
   * last one this node saw (so a lagging watch never kills a live node).
   */
  confirmDead(id: string): Promise<boolean>;
  /**
   * Monotonic time (`clock.monotonic()`) from which this node has observed the bucket for
   * `ttl + margin`: after it, a node it never saw can be taken as dead.
   */
  settledAt(): number;
  /** Ids of the live nodes that host actor type `type`, sorted. */
  hostsOf(type: string): string[];
  /**
   * Monotonic time (`clock.monotonic()`) until which this node's own lease holds: the
   * time it sent its last acknowledged heartbeat + `ttl`. Check it before every turn.
   */
  validUntil(): number;
  /** Whether this node is past its lease (or its last heartbeat failed). */
  isFenced(now?: number): boolean;
  /** Registers a listener; returns a function that removes it. */
  on(listener: (event: MembershipEvent) => void): () => void;
  /** The live nodes as `node_joined` events, then every join and leave. */
  watch(): DirectoryWatch;
  /** Stops heartbeats and the watch, and deletes this node's key so others see it leave. */
  close(): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
  /**
   * Testing only: stops sending heartbeats without deleting the key, as a crash or a long
   * pause would. The node still fences itself when its deadline passes.
   * @internal
   */
  _pauseHeartbeats(): void;
  /** Testing only: resumes heartbeats after {@link Membership._pauseHeartbeats}. @internal */
  _resumeHeartbeats(): void;
}

/**
 * The default margin for a time to live: `min(1000, max(250, ttl / 5))`.
 *
 * @example
 * ```ts
 * import { defaultMargin } from "./membership.ts";
 * defaultMargin(5_000); // 1000
 * ```
 */
export function defaultMargin(ttl: number): number {
  return Math.min(1000, Math.max(250, ttl / 5));
}

interface Heartbeat {
  id: string;
  types: string[];
  since: number;
  /** Random id of this membership instance, to tell duplicate node ids apart. */
  session: string;
  ttl: number;
  /** Set on the last heartbeat of a graceful close, just before the key is deleted. */
  leaving?: true;
}

interface Peer {
  info: NodeInfo;
  session: string;
  /** Monotonic time when this observer last saw a heartbeat put. */
  lastSeen: number;
  ttl: number;
  alive: boolean;
  /** KV revision of the last heartbeat seen (0: unknown). */
  revision: number;
  /** Sessions seen for this id, to detect two live nodes sharing it. */
  sessions: Set<string>;
  warned: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function parseHeartbeat(entry: KvEntry): Heartbeat | undefined {
  try {
    const v = JSON.parse(dec.decode(entry.value)) as Partial<Heartbeat>;
    if (typeof v.id !== "string" || typeof v.session !== "string") return undefined;
    const hb: Heartbeat = {
      id: v.id,
      types: Array.isArray(v.types) ? v.types.filter((t) => typeof t === "string") : [],
      since: typeof v.since === "number" ? v.since : 0,
      session: v.session,
      ttl: typeof v.ttl === "number" && v.ttl > 0 ? v.ttl : 0,
    };
    if (v.leaving === true) hb.leaving = true;
    return hb;
  } catch {
    return undefined;
  }
}

/**
 * Starts this node's membership: opens the `<prefix>_nodes` bucket, watches it, and sends the
 * first heartbeat (resolves once it is acknowledged).
 *
 * Fencing: the node is fenced when a heartbeat fails or when `validUntil()` passes without
 * an acknowledged heartbeat; listeners get `fenced` and the runtime drops every activation.
 * When a heartbeat sent after the fence is acknowledged again, the node is `unfenced`: it
 * may take new activations (each claims its ownership record and a new journal epoch again),
 * but it never resumes the ones it dropped.
 *
 * @example
 * ```ts
 * import { startMembership } from "./membership.ts";
 * import { inProcessMesh } from "../mesh/in_process.ts";
 * const conn = await inProcessMesh().connect({ node: "n1" });
 * const m = await startMembership(conn, {
 *   prefix: "troupe",
 *   node: { id: "n1", types: [], since: Date.now() },
 *   ttl: 5_000,
 * });
 * if (m.isFenced()) throw new Error("fenced");
 * await m.close();
 * await conn.close();
 * ```
 */
export async function startMembership(
  conn: MeshConnection,
  options: MembershipOptions,
): Promise<Membership> {
  const { ttl } = options;
  if (!(ttl > 0) || !Number.isFinite(ttl)) {
    throw new RangeError(`Cannot start membership: ttl must be a positive number, got ${ttl}`);
  }
  const bucket = await openDirectoryBucket(conn, `${options.prefix}_nodes`, options.replicas);
  const m = new MembershipImpl(bucket, options);
  try {
    await m.start();
  } catch (err) {
    await m.close().catch(() => {});
    throw err;
  }
  return m;
}

class MembershipImpl implements Membership {
  readonly self: NodeInfo;
  readonly ttl: number;
  readonly margin: number;
  readonly #bucket: KvBucket;
  readonly #key: string;
  readonly #hosts: boolean;
  readonly #session = crypto.randomUUID();
  readonly #clock: Clock;

  get clock(): Clock {
    return this.#clock;
  }
  readonly #warn: (message: string) => void;
  readonly #peers = new Map<string, Peer>();
  readonly #listeners = new Set<(event: MembershipEvent) => void>();
  readonly #stopOnClose = new Set<EventQueue<DirectoryEvent>>();
  readonly #pending = new Set<Promise<unknown>>();
  #watch: KvWatch | undefined;
  #watchLoop: Promise<void> | undefined;
  #startedAt: number;
  /** When the watch last delivered one of this node's own heartbeats. */
  #echoAt: number;
  #validUntil = -Infinity;
  #fenced = false;
  /** Fences so far: a heartbeat sent while fenced, with the count unchanged, came after the last. */
  #fences = 0;
  #closed = false;
  #paused = false;
  #inFlight: Promise<void> | undefined;
  #heartbeatTimer: TimerId | undefined;
  #fenceTimer: TimerId | undefined;
  #expiryTimer: TimerId | undefined;
  #foreignSessions = new Set<string>();

  constructor(bucket: KvBucket, options: MembershipOptions) {
    this.#bucket = bucket;
    this.#clock = options.clock ?? systemClock;
    this.#startedAt = this.#echoAt = this.#clock.monotonic();
    this.self = {
      id: options.node.id,
      types: [...options.node.types],
      since: options.node.since,
    };
    this.ttl = options.ttl;
    this.margin = options.margin ?? defaultMargin(options.ttl);
    this.#key = encodeToken(options.node.id);
    this.#hosts = options.hosts ?? true;
    this.#warn = options.onWarning ?? ((message) => console.warn(message));
    if (!this.#hosts) this.#validUntil = Infinity;
  }

  async start(): Promise<void> {
    this.#startedAt = this.#clock.monotonic();
    this.#echoAt = this.#startedAt;
    this.#watch = this.#bucket.watch({ key: ">" });
    const watch = this.#watch;
    this.#watchLoop = (async () => {
      try {
        for await (const entry of watch) {
          if (this.#closed) break;
          this.#onEntry(entry);
        }
      } catch (err) {
        if (!this.#closed) this.#warn(`Membership watch of "${this.#bucket.name}" failed: ${err}`);
      }
    })();
    if (this.#hosts) {
      const sentAt = this.#clock.monotonic();
      await this.#bucket.put(this.#key, this.#heartbeatValue());
      this.#acknowledged(sentAt, false);
      this.#scheduleHeartbeat(this.ttl / 3);
    }
    // The members of now, read before anyone asks: the watch delivers the bucket a moment
    // later, and meanwhile a claim would take a live owner for one never seen and wait
    // `ttl + margin` (a restarted node got requests it could not serve in time).
    try {
      for (const key of await this.#bucket.keys()) {
        const entry = await this.#bucket.get(key);
        if (entry && !this.#closed) this.#onEntry(entry);
      }
    } catch (err) {
      this.#warn(`Could not read the members of "${this.#bucket.name}" at start: ${err}`);
    }
  }

  // ---- views ---------------------------------------------------------------------------

  nodes(): NodeInfo[] {
    const now = this.#clock.monotonic();
    const current = this.#watchCurrent(now);
    return [...this.#peers.values()]
      .filter((p) => this.#live(p, now, current))
      .map((p) => p.info)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  isAlive(id: string): boolean {
    return this.status(id) === "alive";
  }

  status(id: string): NodeStatus {
    const now = this.#clock.monotonic();
    const p = this.#peers.get(id);
    if (p) return this.#live(p, now, this.#watchCurrent(now)) ? "alive" : "dead";
    return now >= this.settledAt() ? "dead" : "unknown";
  }

  async confirmDead(id: string): Promise<boolean> {
    if (this.status(id) !== "dead") return false;
    const entry = await this.#bucket.get(encodeToken(id));
    if (!entry || entry.operation !== "PUT") return true;
    if (parseHeartbeat(entry)?.leaving) return true;
    const p = this.#peers.get(id);
    const now = this.#clock.monotonic();
    // A key we never saw, or a heartbeat newer than the last we saw: our watch lags.
    return p !== undefined && !this.#live(p, now, this.#watchCurrent(now)) &&
      entry.revision <= p.revision;
  }

  settledAt(): number {
    return this.#startedAt + this.ttl + this.margin;
  }

  hostsOf(type: string): string[] {
    return this.nodes().filter((n) => n.types.includes(type)).map((n) => n.id);
  }

  validUntil(): number {
    return this.#validUntil;
  }

  isFenced(now?: number): boolean {
    if (!this.#hosts) return false;
    // The clock is read only when it decides (a read costs ~0.2 µs, once per committing turn).
    return this.#fenced || (now ?? this.#clock.monotonic()) > this.#validUntil;
  }

  on(listener: (event: MembershipEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  watch(): DirectoryWatch {
    const queue = createEventQueue<DirectoryEvent>();
    for (const node of this.nodes()) queue.push({ type: "node_joined", node });
    const off = this.on((e) => {
      if (e.type === "node_joined") queue.push({ type: "node_joined", node: e.node });
      else if (e.type === "node_left") queue.push({ type: "node_left", node: e.node });
    });
    queue.onStop(off);
    if (this.#closed) queue.stop();
    else {
      this.#stopOnClose.add(queue);
      queue.onStop(() => this.#stopOnClose.delete(queue));
    }
    return queue;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#clock.clearTimeout(this.#heartbeatTimer);
    this.#clock.clearTimeout(this.#fenceTimer);
    this.#clock.clearTimeout(this.#expiryTimer);
    this.#watch?.stop();
    for (const q of [...this.#stopOnClose]) q.stop();
    this.#stopOnClose.clear();
    await this.#inFlight;
    if (this.#hosts) {
      try {
        // The mark that tells observers this is a graceful leave (see the module doc).
        await this.#bucket.put(this.#key, this.#heartbeatValue(true));
      } catch (err) {
        this.#warn(`Could not announce the leave of node "${this.self.id}": ${err}`);
      }
      try {
        await this.#bucket.delete(this.#key);
      } catch (err) {
        this.#warn(`Could not delete the membership key of node "${this.self.id}": ${err}`);
      }
    }
    await this.#watchLoop;
    await Promise.all([...this.#pending]);
    this.#listeners.clear();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  _pauseHeartbeats(): void {
    this.#paused = true;
    this.#clock.clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = undefined;
  }

  _resumeHeartbeats(): void {
    if (!this.#paused || this.#closed) return;
    this.#paused = false;
    this.#scheduleHeartbeat(0);
  }

  // ---- heartbeats and fencing -----------------------------------------------------------

  #heartbeatValue(leaving = false): Uint8Array {
    const hb: Heartbeat = {
      id: this.self.id,
      types: [...this.self.types],
      since: this.self.since,
      session: this.#session,
      ttl: this.ttl,
    };
    if (leaving) hb.leaving = true;
    return enc.encode(JSON.stringify(hb));
  }

  #scheduleHeartbeat(delay: number): void {
    if (this.#closed || this.#paused || !this.#hosts) return;
    this.#clock.clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = this.#clock.setTimeout(() => {
      this.#heartbeatTimer = undefined;
      this.#heartbeat();
    }, delay);
  }

  #heartbeat(): void {
    if (this.#closed || this.#paused || this.#inFlight) return;
    const sentAt = this.#clock.monotonic();
    // Sent after the fence (not merely at the same time: a virtual clock has equal times).
    const afterFence = this.#fenced ? this.#fences : false;
    let timer: TimerId | undefined;
    // Stop waiting for a put after ttl / 3 and send another (a put that lands late is
    // harmless: only acknowledged puts extend the lease), so that heartbeats go through as
    // soon as the KV answers again, e.g. after a leader election.
    const wait = Math.max(250, this.ttl / 3);
    const timeout = new Promise<never>((_, reject) => {
      timer = this.#clock.setTimeout(
        () => reject(new Error(`Heartbeat not acknowledged within ${wait} ms`)),
        wait,
      );
    });
    const put = this.#bucket.put(this.#key, this.#heartbeatValue());
    put.catch(() => {});
    this.#inFlight = Promise.race([put, timeout]).then(
      () => {
        if (this.#closed) return;
        this.#acknowledged(sentAt, afterFence);
        this.#scheduleHeartbeat(this.ttl / 3);
      },
      (err) => {
        if (this.#closed) return;
        // A failed put does not shorten the lease that earlier acknowledged heartbeats hold
        // (others time it the same way): keep trying, faster, and fence only once it lapsed
        // (the fence timer does it on time). A KV leader election of a few seconds then
        // costs nothing when it is shorter than the lease.
        this.#lastHeartbeatError = err;
        if (this.#clock.monotonic() > this.#validUntil) this.#fence("heartbeat_failed", err);
        this.#scheduleHeartbeat(this.ttl / 10);
      },
    ).finally(() => {
      this.#clock.clearTimeout(timer);
      this.#inFlight = undefined;
    });
  }

  /** `afterFence`: the fence count when it was sent while fenced, else false. */
  #acknowledged(sentAt: number, afterFence: number | false): void {
    this.#lastHeartbeatError = undefined;
    this.#validUntil = Math.max(this.#validUntil, sentAt + this.ttl);
    // Our own heartbeat is a heartbeat we have seen, even before the watch echoes it.
    this.#seen(
      {
        id: this.self.id,
        types: [...this.self.types],
        since: this.self.since,
        session: this.#session,
        ttl: this.ttl,
      },
      this.#clock.monotonic(),
      0,
    );
    if (
      this.#fenced && afterFence === this.#fences && this.#clock.monotonic() <= this.#validUntil
    ) {
      this.#fenced = false;
      this.#emit({ type: "unfenced" });
    }
    this.#armFenceTimer();
  }

  #armFenceTimer(): void {
    this.#clock.clearTimeout(this.#fenceTimer);
    if (this.#closed || this.#fenced) return;
    const delay = Math.max(0, this.#validUntil - this.#clock.monotonic());
    this.#fenceTimer = this.#clock.setTimeout(() => {
      this.#fenceTimer = undefined;
      if (this.#clock.monotonic() > this.#validUntil) {
        if (this.#lastHeartbeatError !== undefined) {
          this.#fence("heartbeat_failed", this.#lastHeartbeatError);
        } else this.#fence("expired");
      } else this.#armFenceTimer();
    }, delay + 1);
  }

  #lastHeartbeatError: unknown = undefined;

  #fence(reason: "heartbeat_failed" | "expired", error?: unknown): void {
    if (this.#fenced || this.#closed) return;
    this.#fenced = true;
    this.#fences++;
    this.#clock.clearTimeout(this.#fenceTimer);
    this.#fenceTimer = undefined;
    this.#emit(
      error === undefined ? { type: "fenced", reason } : { type: "fenced", reason, error },
    );
  }

  // ---- the view -------------------------------------------------------------------------

  #onEntry(entry: KvEntry): void {
    let id: string;
    try {
      id = decodeToken(entry.key);
    } catch {
      return;
    }
    if (entry.operation !== "PUT") {
      if (id === this.self.id && this.#hosts && !this.#closed) {
        this.#warn(
          `The membership key of node "${id}" was deleted by another node; sending a heartbeat`,
        );
        if (!this.#paused && !this.#fenced) this.#scheduleHeartbeat(0);
        return; // still here while it heartbeats: its own view keeps it
      }
      // Not announced by the node (else its `leaving` mark was seen first): a clean-up
      // after a death by another node, or a leave whose mark this watch skipped.
      const p = this.#peers.get(id);
      if (p?.alive) {
        p.alive = false;
        this.#emit({ type: "node_left", node: p.info, reason: "expired" });
      }
      this.#armExpiry();
      return;
    }
    const hb = parseHeartbeat(entry);
    if (!hb || hb.id !== id) return;
    if (hb.leaving) {
      if (id !== this.self.id) this.#left(hb, entry.revision);
      return;
    }
    if (id === this.self.id && hb.session === this.#session) this.#echoAt = this.#clock.monotonic();
    if (id === this.self.id && hb.session !== this.#session) {
      if (!this.#foreignSessions.has(hb.session)) {
        this.#foreignSessions.add(hb.session);
        this.#warn(
          `Another node uses the id "${id}" (session ${hb.session}): node ids must be unique`,
        );
      }
    }
    this.#seen(hb, this.#clock.monotonic(), entry.revision);
  }

  /** Node `hb.id` announced its graceful leave (a put marked `leaving`). */
  #left(hb: Heartbeat, revision: number): void {
    const p = this.#peers.get(hb.id);
    if (!p) {
      // Seen only as leaving (e.g. in the initial listing): known, and dead.
      this.#peers.set(hb.id, {
        info: { id: hb.id, types: hb.types, since: hb.since },
        session: hb.session,
        lastSeen: this.#clock.monotonic(),
        ttl: Math.max(this.ttl, hb.ttl),
        alive: false,
        revision,
        sessions: new Set([hb.session]),
        warned: false,
      });
      return;
    }
    p.revision = revision;
    if (p.alive) {
      p.alive = false;
      this.#emit({ type: "node_left", node: p.info, reason: "left" });
    }
    this.#armExpiry();
  }

  #seen(hb: Heartbeat, now: number, revision: number): void {
    const info: NodeInfo = { id: hb.id, types: hb.types, since: hb.since };
    const ttl = Math.max(this.ttl, hb.ttl);
    let p = this.#peers.get(hb.id);
    if (!p) {
      p = {
        info,
        session: hb.session,
        lastSeen: now,
        ttl,
        alive: true,
        revision,
        sessions: new Set([hb.session]),
        warned: false,
      };
      this.#peers.set(hb.id, p);
      this.#emit({ type: "node_joined", node: info });
    } else {
      if (
        p.session !== hb.session && p.sessions.has(hb.session) && !p.warned &&
        hb.id !== this.self.id
      ) {
        // Sessions alternate: two live processes put under one id.
        p.warned = true;
        this.#warn(`Two live nodes share the id "${hb.id}": node ids must be unique`);
      }
      p.sessions.add(hb.session);
      if (p.sessions.size > 8) p.sessions.delete(p.sessions.values().next().value!);
      p.session = hb.session;
      p.lastSeen = Math.max(p.lastSeen, now);
      if (revision > 0) p.revision = revision;
      p.ttl = ttl;
      const changed = !sameInfo(p.info, info);
      p.info = info;
      if (!p.alive) {
        p.alive = true;
        this.#emit({ type: "node_joined", node: info });
      } else if (changed) {
        this.#emit({ type: "node_joined", node: info });
      }
    }
    this.#armExpiry();
  }

  /**
   * Whether this node's watch is known to be current: a hosting node sees each of its own
   * heartbeats come back through the watch, one every `ttl / 3`. When they stop coming (the
   * watch lags or is being re-established, e.g. while JetStream elects a leader after a server
   * died), silence of the others proves nothing, so nobody is declared dead until the watch
   * delivers again. Nodes that do not heartbeat (observers) cannot tell and always trust it.
   */
  #watchCurrent(now: number): boolean {
    return !this.#hosts || now - this.#echoAt <= this.ttl / 3 + 2 * this.margin;
  }

  /**
   * Whether peer `p` is alive at `now`: seen, not gone, and heard from within ttl + margin
   * (unless this node's watch is not current: then silence proves nothing). A pure read, so
   * that the views are exact between two runs of the expiry timer; {@link #sweep} acts on it.
   */
  #live(p: Peer, now: number, current: boolean): boolean {
    if (!p.alive) return false;
    if (!current && p.info.id !== this.self.id) return true;
    return now <= p.lastSeen + p.ttl + this.margin;
  }

  /**
   * Run by the expiry timer only (views never write): marks as dead every peer that is no
   * longer {@link #live} and emits `node_left`. The dead node's key is deleted, checked
   * against the revision last seen (so a newer heartbeat is never deleted), so that nodes
   * starting later do not see it alive for another ttl + margin.
   */
  #sweep(): void {
    const now = this.#clock.monotonic();
    const current = this.#watchCurrent(now);
    for (const p of this.#peers.values()) {
      if (p.alive && !this.#live(p, now, current)) {
        p.alive = false;
        if (p.revision > 0 && p.info.id !== this.self.id && !this.#closed) {
          const gc = this.#bucket.delete(encodeToken(p.info.id), { revision: p.revision })
            .catch(() => {})
            .finally(() => this.#pending.delete(gc));
          this.#pending.add(gc);
        }
        this.#emit({ type: "node_left", node: p.info, reason: "expired" });
      }
    }
  }

  #armExpiry(): void {
    this.#clock.clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    if (this.#closed) return;
    const now = this.#clock.monotonic();
    const current = this.#watchCurrent(now);
    let next = Infinity;
    for (const p of this.#peers.values()) {
      if (!p.alive) continue;
      const due = p.lastSeen + p.ttl + this.margin;
      // with a lagging watch an overdue peer waits for the next echo (which re-arms this)
      if (!current && due <= now && p.info.id !== this.self.id) continue;
      next = Math.min(next, due);
    }
    if (next === Infinity) return;
    this.#expiryTimer = this.#clock.setTimeout(() => {
      this.#expiryTimer = undefined;
      this.#sweep();
      this.#armExpiry();
    }, Math.max(0, next - now) + 1);
  }

  #emit(event: MembershipEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.#warn(`A membership listener threw: ${err}`);
      }
    }
  }
}

function sameInfo(a: NodeInfo, b: NodeInfo): boolean {
  return a.since === b.since && a.types.length === b.types.length &&
    a.types.every((t, i) => t === b.types[i]);
}
