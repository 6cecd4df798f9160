/**
 * Leases, locks and leader election for users, on the Mesh key-value port.
 *
 * Protocol (bucket `<prefix>_leases`, key `encodeToken(name)`, value JSON
 * `{ holder, owner, ttl }` where `owner` is a random id of one lease instance):
 * - acquire = `create`; the fencing token is
 *   `createdAt × 1000 + revision`: the KV revision of the acquiring write (the create, or the
 *   take-over update) above the creation time (ms, server clock) of the bucket incarnation
 *   that took the write. Revisions grow across the whole bucket, so tokens grow strictly per
 *   name; when the bucket is deleted and created again (by an operator, say), revisions
 *   restart at 1 but `createdAt` moved on by at least the old bucket's lifetime, and that
 *   lifetime × 1000 exceeds its last revision unless it took more than a million writes per
 *   second (or a server clock stepped back by more than that lifetime). The incarnation is
 *   read from the server after the write and compared with the one seen before it: when they
 *   differ, the bucket was recreated around the write, which is undone and tried again. So a
 *   token is never computed from a stale incarnation. `fence` is
 *   `"<incarnation id>:<revision>"`;
 * - the holder renews every `ttl / 3` with a compare-and-set `update` on its last revision.
 *   The lease holds until the time the last successful write was *sent* + `ttl`, on the
 *   holder's monotonic clock. A renewal that conflicts (someone took it over), or no
 *   successful renewal by that deadline (checked by a timer, so it fires even when the KV is
 *   unreachable), aborts `lease.signal`;
 * - a waiter watches the key: a `DEL` (release) makes it try `create` at once; otherwise it
 *   takes over with a compare-and-set `update` once it has seen no new revision for
 *   `ttl + margin` on its own clock (the holder stopped renewing, so it lost the lease at
 *   least `margin` earlier);
 * - `release()` aborts the signal, then deletes the key if its revision is still ours.
 *
 * KV leases are an efficiency mechanism: pass `lease.token` (or `lease.fence`) to what the
 * lease protects and refuse older tokens there. On nats-server 2.9.10 with R3 buckets two
 * concurrent compare-and-sets can both succeed; the tokens of the two still differ and grow.
 *
 * @module
 */

import type { KvBucket, KvEntry, KvIncarnation, MeshConnection } from "../mesh/types.ts";
import { encodeToken } from "../mesh/subject.ts";
import { ClosedError, ConflictError, TimeoutError } from "../errors.ts";
import type { ElectOptions, Leader, Lease, LeaseOptions } from "./types.ts";
import { defaultMargin, type Membership } from "./membership.ts";
import { isConflict, latestAfterSettle, openDirectoryBucket } from "./_kv.ts";
import type { Clock, TimerId } from "../util/clock.ts";

/** A held lease, with the details of its fencing token. */
export interface HeldLease extends Lease {
  /** `"<bucket incarnation>:<revision>"`: unique even if the bucket is ever recreated. */
  readonly fence: string;
  /** The node holding it (this node). */
  readonly holder: string;
  /** Monotonic time (the node clock's `monotonic()`) until which the lease holds, as of now. */
  validUntil(): number;
}

/** Options of {@link createLeases}. */
export interface LeasesOptions {
  /** First part of the bucket name: the bucket is `<prefix>_leases`. */
  prefix: string;
  /** The holder id written into the lease records. @default {membership.self.id} */
  node?: string;
  /** Default lease time to live, ms. @default {5000} */
  ttl?: number;
  /** Replicas of the bucket. @default {1} */
  replicas?: number;
  /** Receives warnings (a throwing election callback). @default {console.warn} */
  onWarning?: (message: string) => void;
  /** The clock renewals, deadlines and take-overs run on. @default {membership.clock} */
  clock?: Clock;
}

/**
 * Leases, locks and elections of one node.
 *
 * @example
 * ```ts
 * import { createLeases } from "./leases.ts";
 * import { startMembership } from "./membership.ts";
 * import { inProcessMesh } from "../mesh/in_process.ts";
 * const conn = await inProcessMesh().connect({ node: "n1" });
 * const node = { id: "n1", types: [], since: Date.now() };
 * const membership = await startMembership(conn, { prefix: "troupe", node, ttl: 5_000 });
 * const leases = await createLeases(conn, membership, { prefix: "troupe" });
 * await leases.lock("invoice-7", (lease) => console.log("token", lease.token));
 * await leases.close();
 * await membership.close();
 * await conn.close();
 * ```
 */
export interface Leases {
  /** Waits until lease `name` is acquired (bounded by `timeout`, `signal` and `close()`). */
  lease(name: string, options?: LeaseOptions): Promise<HeldLease>;
  /** Runs `fn` while holding lease `name`; releases it afterwards, even if `fn` throws. */
  lock<T>(
    name: string,
    fn: (lease: HeldLease) => Promise<T> | T,
    options?: LeaseOptions,
  ): Promise<T>;
  /** Competes for leadership `name` in the background until resigned or closed. */
  elect(name: string, options?: ElectOptions): Leader;
  /** The leases this node holds now (leaderships included). */
  holding(): HeldLease[];
  /** Resigns every candidacy, releases every lease held, rejects every waiter (`ClosedError`). */
  close(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const DEFAULT_TTL = 5_000;
/** Revisions per millisecond of bucket age that tokens leave room for (see the module doc). */
const TOKEN_SCALE = 1000;
/** How many times an acquisition is retried when the bucket was recreated around it. */
const INCARNATION_RETRIES = 3;

/**
 * The fencing token of a lease acquired with a write at `revision` into the bucket
 * incarnation created at `createdAt` (ms): `createdAt × 1000 + revision`.
 *
 * @example
 * ```ts
 * import { leaseToken } from "./leases.ts";
 * leaseToken({ id: "x", createdAt: 1_700_000_000_000 }, 7); // 1_700_000_000_000_007
 * ```
 */
export function leaseToken(incarnation: KvIncarnation, revision: number): number {
  const token = incarnation.createdAt * TOKEN_SCALE + revision;
  if (!Number.isSafeInteger(token)) {
    throw new RangeError(`Cannot make a lease token of revision ${revision}: too large`);
  }
  return token;
}

function recordTtl(entry: KvEntry, fallback: number): number {
  try {
    const v = JSON.parse(dec.decode(entry.value)) as { ttl?: unknown };
    return typeof v.ttl === "number" && v.ttl > 0 ? v.ttl : fallback;
  } catch {
    return fallback;
  }
}

/**
 * Opens the `<prefix>_leases` bucket and returns this node's leases.
 *
 * @example
 * ```ts
 * import { createLeases } from "./leases.ts";
 * import { startMembership } from "./membership.ts";
 * import { inProcessMesh } from "../mesh/in_process.ts";
 * const conn = await inProcessMesh().connect({ node: "n1" });
 * const node = { id: "n1", types: [], since: Date.now() };
 * const membership = await startMembership(conn, { prefix: "troupe", node, ttl: 5_000 });
 * const leases = await createLeases(conn, membership, { prefix: "troupe" });
 * const lease = await leases.lease("billing-cron", { ttl: 5_000, timeout: 10_000 });
 * lease.signal.addEventListener("abort", () => console.log("lost"));
 * await lease.release();
 * await leases.close();
 * await membership.close();
 * await conn.close();
 * ```
 */
export async function createLeases(
  conn: MeshConnection,
  membership: Membership,
  options: LeasesOptions,
): Promise<Leases> {
  const bucket = await openDirectoryBucket(conn, `${options.prefix}_leases`, options.replicas);
  return new LeasesImpl(bucket, options.node ?? membership.self.id, options, membership.clock);
}

class LeasesImpl implements Leases {
  readonly bucket: KvBucket;
  readonly holder: string;
  readonly defaultTtl: number;
  readonly warn: (message: string) => void;
  readonly clock: Clock;
  readonly held = new Set<LeaseImpl>();
  readonly leaders = new Set<LeaderImpl>();
  readonly pending = new Set<Promise<unknown>>();
  readonly closing = new AbortController();
  /** The bucket's incarnation as last read from the server. */
  #incarnation: KvIncarnation | undefined;

  constructor(bucket: KvBucket, holder: string, options: LeasesOptions, clock: Clock) {
    this.bucket = bucket;
    this.holder = holder;
    this.defaultTtl = options.ttl ?? DEFAULT_TTL;
    this.warn = options.onWarning ?? ((message) => console.warn(message));
    this.clock = options.clock ?? clock;
  }

  /** Runs a best-effort KV operation that `close()` waits for. */
  track(p: Promise<unknown>): void {
    const q = p.catch(() => {}).finally(() => this.pending.delete(q));
    this.pending.add(q);
  }

  async lease(name: string, options: LeaseOptions = {}): Promise<HeldLease> {
    const ttl = options.ttl ?? this.defaultTtl;
    if (!(ttl > 0) || !Number.isFinite(ttl)) {
      throw new RangeError(`Cannot acquire lease "${name}": ttl must be positive, got ${ttl}`);
    }
    const timeout = options.timeout ?? Infinity;
    const stop = new AbortController();
    const onClose = () => stop.abort(new ClosedError("The leases are closed"));
    const onSignal = () => stop.abort(options.signal?.reason);
    let timer: TimerId | undefined;
    if (Number.isFinite(timeout)) {
      timer = this.clock.setTimeout(
        () =>
          stop.abort(new TimeoutError(`Timed out after ${timeout} ms waiting for lease "${name}"`)),
        Math.max(0, timeout),
      );
    }
    this.closing.signal.addEventListener("abort", onClose, { once: true });
    options.signal?.addEventListener("abort", onSignal, { once: true });
    if (options.signal?.aborted) onSignal();
    if (this.closing.signal.aborted) onClose();
    try {
      return await this.#acquire(name, ttl, stop.signal);
    } finally {
      this.clock.clearTimeout(timer);
      this.closing.signal.removeEventListener("abort", onClose);
      options.signal?.removeEventListener("abort", onSignal);
    }
  }

  /**
   * After a write that succeeded on a bucket without serialized compare-and-set: waits for
   * concurrent writes to be applied, then checks that `revision` is still the key's latest.
   */
  async #stillLatest(key: string, revision: number): Promise<boolean> {
    const latest = await latestAfterSettle(this.bucket, key);
    return latest !== null && latest.revision === revision;
  }

  async #acquire(name: string, ttl: number, stop: AbortSignal): Promise<HeldLease> {
    const key = encodeToken(name);
    const owner = crypto.randomUUID();
    const value = enc.encode(JSON.stringify({ holder: this.holder, owner, ttl }));
    stop.throwIfAborted();
    const attempt = async (expected?: number): Promise<HeldLease | undefined> => {
      for (let tries = 0;; tries++) {
        const before = this.#incarnation ??= await this.bucket.incarnationNow();
        const sentAt = this.clock.monotonic();
        let rev: number;
        try {
          rev = expected === undefined
            ? await this.bucket.create(key, value)
            : await this.bucket.update(key, value, expected);
        } catch (err) {
          if (isConflict(err)) return undefined;
          throw err;
        }
        let after: KvIncarnation;
        try {
          after = this.#incarnation = await this.bucket.incarnationNow();
        } catch (err) {
          this.track(this.bucket.delete(key, { revision: rev }));
          throw err;
        }
        if (after.id !== before.id) {
          // The bucket was recreated since we last looked: the write may have landed in
          // either incarnation, so its token is unknown. Undo it and write again.
          await this.bucket.delete(key, { revision: rev }).catch(() => {});
          if (tries + 1 >= INCARNATION_RETRIES || expected !== undefined) return undefined;
          continue;
        }
        if (!this.bucket.serializedCas && !(await this.#stillLatest(key, rev))) {
          // Replicated compare-and-set on nats-server < 2.9.21 can let a concurrent writer
          // win too: the later write stands, and every writer but its author sees a newer
          // revision.
          return undefined;
        }
        if (stop.aborted || this.clock.monotonic() >= sentAt + ttl) {
          // Gave up, or the write took a whole ttl: do not keep it.
          this.track(this.bucket.delete(key, { revision: rev }));
          stop.throwIfAborted();
          return undefined;
        }
        return new LeaseImpl(this, name, key, value, ttl, rev, after, sentAt);
      }
    };

    const first = await attempt();
    if (first) return first;

    const watch = this.bucket.watch({ key });
    const it = watch[Symbol.asyncIterator]();
    let timer: TimerId | undefined;
    const stopped = new Promise<"stop">((resolve) => {
      if (stop.aborted) resolve("stop");
      else stop.addEventListener("abort", () => resolve("stop"), { once: true });
    });
    try {
      // The key may have been deleted before the watch started: try once more.
      const again = await attempt();
      if (again) return again;
      let lastRevision: number | undefined;
      let lastChange = this.clock.monotonic();
      let holderTtl = ttl;
      let next = it.next();
      for (;;) {
        stop.throwIfAborted();
        const timed = new Promise<"timer">((resolve) => {
          if (lastRevision === undefined) return; // nothing to take over: wait for the watch
          const at = lastChange + holderTtl + defaultMargin(holderTtl);
          timer = this.clock.setTimeout(
            () => resolve("timer"),
            Math.max(0, at - this.clock.monotonic()) + 1,
          );
        });
        const r = await Promise.race([next, timed, stopped]);
        this.clock.clearTimeout(timer);
        if (r === "stop") stop.throwIfAborted();
        if (r === "timer") {
          // No new revision for ttl + margin: the holder is gone; take over.
          const won = await attempt(lastRevision);
          if (won) return won;
          lastChange = this.clock.monotonic(); // the watch brings whatever beat us
          continue;
        }
        if (typeof r !== "object") continue;
        if (r.done) throw new ClosedError(`The watch of lease "${name}" ended`);
        next = it.next();
        const entry = r.value;
        if (entry.operation === "PUT") {
          lastRevision = entry.revision;
          lastChange = this.clock.monotonic();
          holderTtl = recordTtl(entry, ttl);
        } else {
          // Released: compete at once.
          lastRevision = undefined;
          const won = await attempt();
          if (won) return won;
        }
      }
    } finally {
      this.clock.clearTimeout(timer);
      watch.stop();
    }
  }

  async lock<T>(
    name: string,
    fn: (lease: HeldLease) => Promise<T> | T,
    options?: LeaseOptions,
  ): Promise<T> {
    const lease = await this.lease(name, options);
    try {
      return await fn(lease);
    } finally {
      await lease.release();
    }
  }

  elect(name: string, options: ElectOptions = {}): Leader {
    const leader = new LeaderImpl(this, name, options);
    if (this.closing.signal.aborted) void leader.resign();
    return leader;
  }

  holding(): HeldLease[] {
    return [...this.held];
  }

  async close(): Promise<void> {
    if (this.closing.signal.aborted) return;
    this.closing.abort(new ClosedError("The leases are closed"));
    await Promise.all([...this.leaders].map((l) => l.resign()));
    await Promise.all([...this.held].map((l) => l.release()));
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }
}

class LeaseImpl implements HeldLease {
  readonly name: string;
  readonly token: number;
  readonly fence: string;
  readonly holder: string;
  readonly #leases: LeasesImpl;
  readonly #key: string;
  readonly #value: Uint8Array;
  readonly #ttl: number;
  readonly #controller = new AbortController();
  #revision: number;
  #deadline: number;
  #renewTimer: TimerId | undefined;
  #deadlineTimer: TimerId | undefined;
  #renewing: Promise<void> | undefined;
  #released: Promise<void> | undefined;

  constructor(
    leases: LeasesImpl,
    name: string,
    key: string,
    value: Uint8Array,
    ttl: number,
    revision: number,
    incarnation: KvIncarnation,
    sentAt: number,
  ) {
    this.#leases = leases;
    this.name = name;
    this.#key = key;
    this.#value = value;
    this.#ttl = ttl;
    this.token = leaseToken(incarnation, revision);
    this.fence = `${incarnation.id}:${revision}`;
    this.holder = leases.holder;
    this.#revision = revision;
    this.#deadline = sentAt + ttl;
    leases.held.add(this);
    this.#armDeadline();
    this.#scheduleRenewal(ttl / 3);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  validUntil(): number {
    return this.signal.aborted ? -Infinity : this.#deadline;
  }

  #scheduleRenewal(delay: number): void {
    this.#leases.clock.clearTimeout(this.#renewTimer);
    if (this.signal.aborted) return;
    this.#renewTimer = this.#leases.clock.setTimeout(() => {
      this.#renewTimer = undefined;
      this.#renewing = this.#renew().finally(() => (this.#renewing = undefined));
    }, delay);
  }

  async #renew(): Promise<void> {
    if (this.signal.aborted) return;
    const sentAt = this.#leases.clock.monotonic();
    let revision: number;
    try {
      revision = await this.#leases.bucket.update(this.#key, this.#value, this.#revision);
    } catch (err) {
      if (this.signal.aborted) return;
      if (isConflict(err)) {
        this.#lose(new ConflictError(`Lease "${this.name}" was taken over by another holder`));
      } else {
        // Unreachable for now: retry soon; the deadline timer aborts if it stays so.
        this.#scheduleRenewal(this.#ttl / 10);
      }
      return;
    }
    if (this.signal.aborted) {
      // Lost (deadline) or released while the renewal was in flight: give the key back.
      if (this.#released === undefined) {
        this.#leases.track(this.#leases.bucket.delete(this.#key, { revision }));
      }
      this.#revision = revision;
      return;
    }
    this.#revision = revision;
    this.#deadline = Math.max(this.#deadline, sentAt + this.#ttl);
    this.#armDeadline();
    this.#scheduleRenewal(this.#ttl / 3);
  }

  #armDeadline(): void {
    this.#leases.clock.clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = this.#leases.clock.setTimeout(() => {
      this.#deadlineTimer = undefined;
      if (this.#leases.clock.monotonic() >= this.#deadline) {
        this.#lose(
          new TimeoutError(`Lease "${this.name}" expired: not renewed within ${this.#ttl} ms`),
        );
        // Wake the waiters early if the record is still ours (best effort).
        this.#leases.track(
          this.#leases.bucket.delete(this.#key, { revision: this.#revision }),
        );
      } else this.#armDeadline();
    }, Math.max(0, this.#deadline - this.#leases.clock.monotonic()));
  }

  #lose(reason: unknown): void {
    if (this.signal.aborted) return;
    this.#leases.clock.clearTimeout(this.#renewTimer);
    this.#leases.clock.clearTimeout(this.#deadlineTimer);
    this.#leases.held.delete(this);
    this.#controller.abort(reason);
  }

  release(): Promise<void> {
    this.#released ??= (async () => {
      const wasHeld = !this.signal.aborted;
      this.#lose(new ClosedError(`Lease "${this.name}" was released`));
      await this.#renewing;
      if (!wasHeld) return;
      try {
        await this.#leases.bucket.delete(this.#key, { revision: this.#revision });
      } catch (err) {
        if (!isConflict(err)) throw err; // no longer ours: nothing to release
      }
    })();
    return this.#released;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

class LeaderImpl implements Leader {
  readonly elected: Promise<Lease>;
  readonly #leases: LeasesImpl;
  readonly #name: string;
  readonly #options: ElectOptions;
  readonly #stop = new AbortController();
  readonly #loop: Promise<void>;
  #lease: HeldLease | undefined;
  #resolve!: (lease: Lease) => void;
  #reject!: (err: unknown) => void;
  #wasElected = false;

  constructor(leases: LeasesImpl, name: string, options: ElectOptions) {
    this.#leases = leases;
    this.#name = name;
    this.#options = options;
    this.elected = new Promise<Lease>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.elected.catch(() => {});
    leases.leaders.add(this);
    this.#loop = this.#run().finally(() => leases.leaders.delete(this));
  }

  get isLeader(): boolean {
    return this.#lease !== undefined && !this.#lease.signal.aborted;
  }

  async #run(): Promise<void> {
    const stop = this.#stop.signal;
    const ttl = this.#options.ttl ?? this.#leases.defaultTtl;
    while (!stop.aborted) {
      let lease: HeldLease;
      try {
        lease = await this.#leases.lease(this.#name, { ttl, signal: stop });
      } catch (err) {
        if (stop.aborted || this.#leases.closing.signal.aborted) break;
        this.#leases.warn(`Election "${this.#name}": acquiring the lease failed: ${err}`);
        await sleep(this.#leases.clock, ttl / 3, stop);
        continue;
      }
      this.#lease = lease;
      if (!this.#wasElected) {
        this.#wasElected = true;
        this.#resolve(lease);
      }
      const revoked = new Promise<void>((resolve) => {
        const done = () => {
          lease.signal.removeEventListener("abort", done);
          stop.removeEventListener("abort", done);
          resolve();
        };
        lease.signal.addEventListener("abort", done, { once: true });
        stop.addEventListener("abort", done, { once: true });
        if (lease.signal.aborted || stop.aborted) done();
      });
      const onElected = Promise.resolve()
        .then(() => this.#options.onElected?.(lease))
        .catch((err) => this.#leases.warn(`Election "${this.#name}": onElected threw: ${err}`));
      await Promise.race([onElected, revoked]);
      await revoked;
      // Release first: the signal aborts and another candidate is elected at once.
      await lease.release().catch(() => {});
      this.#lease = undefined;
      try {
        await this.#options.onRevoked?.();
      } catch (err) {
        this.#leases.warn(`Election "${this.#name}": onRevoked threw: ${err}`);
      }
    }
    if (!this.#wasElected) {
      this.#reject(new ClosedError(`Candidacy for "${this.#name}" ended before it was elected`));
    }
  }

  async resign(): Promise<void> {
    this.#stop.abort(new ClosedError(`Resigned from "${this.#name}"`));
    await this.#loop;
  }
}

function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clock.clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    if (signal.aborted) done();
  });
}
