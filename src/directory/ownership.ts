/**
 * Who hosts which activation: the directory record of each active actor, on the Mesh
 * key-value port.
 *
 * Protocol (bucket `<prefix>_acts`, key `encodeToken(type).encodeToken(id)`, value JSON
 * `{ node, incarnation }`):
 * - a node claims an actor with `create` (fails if the key exists);
 * - if the key exists and names this node, the claim succeeds (the record is rewritten, with
 *   a compare-and-set, to the new incarnation);
 * - if it names a node alive per {@link Membership}, the claim fails with that owner;
 * - if it names a node that is dead per membership (silent for `ttl + margin` on this node's
 *   clock, or gone with a graceful leave), and an authoritative read of that node's
 *   heartbeat key confirms no newer heartbeat exists (a lagging watch must not kill a live
 *   node), the claim takes over with a compare-and-set `update` on the revision read;
 * - if it names a node this node has never seen since it started, the claim waits until this
 *   node has observed the membership bucket for `ttl + margin` (a node that just started must
 *   not take over from a live node it has not heard of yet);
 * - conflicts on `create`/`update` re-read and retry a bounded number of times.
 *
 * This record routes and describes; it is not the authority on writes: every activation also
 * takes a new epoch in the journal, which fences a stale owner's appends (see DESIGN.md).
 *
 * @module
 */

import type { KvBucket, KvEntry, KvWatch, MeshConnection } from "../mesh/types.ts";
import { decodeToken, encodeToken } from "../mesh/subject.ts";
import { ClosedError, ConflictError, UnavailableError } from "../errors.ts";
import type { DirectoryEvent } from "./types.ts";
import type { DirectoryWatch, Membership } from "./membership.ts";
import { isConflict, latestAfterSettle, openDirectoryBucket } from "./_kv.ts";
import { createEventQueue } from "../util/queue.ts";

/** Options of {@link createOwnership}. */
export interface OwnershipOptions {
  /** First part of the bucket name: the bucket is `<prefix>_acts`. */
  prefix: string;
  /** Replicas of the bucket. @default {1} */
  replicas?: number;
  /** How many times a claim re-reads and retries after a write conflict. @default {5} */
  retries?: number;
}

/** The result of {@link Ownership.claim}. */
export type ClaimResult =
  | {
    readonly ok: true;
    /** KV revision of the record written. */
    readonly revision: number;
    /** Random id of this activation, stored in the record. */
    readonly incarnation: string;
    /** The node this activation took over from, if it took over a dead node's record. */
    readonly takenFrom?: string;
  }
  | { readonly ok: false; readonly owner: string };

/** Options of {@link Ownership.claim}. */
export interface ClaimOptions {
  /** Aborts the claim (it may wait up to `ttl + margin` for membership to settle). */
  signal?: AbortSignal;
}

/**
 * The activation directory of one node.
 *
 * @example
 * ```ts
 * import { startMembership } from "./membership.ts";
 * import { createOwnership } from "./ownership.ts";
 * import { inProcessMesh } from "../mesh/in_process.ts";
 * const conn = await inProcessMesh().connect({ node: "n1" });
 * const node = { id: "n1", types: ["account"], since: Date.now() };
 * const membership = await startMembership(conn, { prefix: "troupe", node, ttl: 5_000 });
 * const ownership = await createOwnership(conn, membership, { prefix: "troupe" });
 * const claim = await ownership.claim("account", "alice");
 * if (claim.ok) console.log(await ownership.locate("account", "alice")); // "n1"
 * await ownership.close();
 * await membership.close();
 * await conn.close();
 * ```
 */
export interface Ownership {
  /** Claims actor `(type, id)` for this node. Throws `UnavailableError` when fenced. */
  claim(type: string, id: string, options?: ClaimOptions): Promise<ClaimResult>;
  /** Deletes the record, only if it is still this node's (revision-checked). */
  release(type: string, id: string): Promise<void>;
  /** The node hosting `(type, id)` now, if that node is alive. */
  locate(type: string, id: string): Promise<string | undefined>;
  /** The node named by the record of `(type, id)`, alive or not (undefined: no record). */
  owner(type: string, id: string): Promise<string | undefined>;
  /** Releases every record this node claimed. */
  releaseAll(): Promise<void>;
  /** Current activations as `activated` events, then every change. */
  watch(): DirectoryWatch;
  /** Releases everything, stops the watches and pending claims. Idempotent. */
  close(): Promise<void>;
}

interface OwnerRecord {
  node: string;
  incarnation: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function parseRecord(entry: KvEntry): OwnerRecord | undefined {
  try {
    const v = JSON.parse(dec.decode(entry.value)) as Partial<OwnerRecord>;
    if (typeof v.node !== "string") return undefined;
    return { node: v.node, incarnation: typeof v.incarnation === "string" ? v.incarnation : "" };
  } catch {
    return undefined;
  }
}

/** The KV key of actor `(type, id)`. */
export function actorKey(type: string, id: string): string {
  return `${encodeToken(type)}.${encodeToken(id)}`;
}

function parseActorKey(key: string): { type: string; id: string } | undefined {
  const parts = key.split(".");
  if (parts.length !== 2) return undefined;
  try {
    return { type: decodeToken(parts[0]!), id: decodeToken(parts[1]!) };
  } catch {
    return undefined;
  }
}

/**
 * Opens the `<prefix>_acts` bucket and returns this node's activation directory.
 *
 * @example
 * ```ts
 * import { createOwnership } from "./ownership.ts";
 * import { startMembership } from "./membership.ts";
 * import { inProcessMesh } from "../mesh/in_process.ts";
 * const conn = await inProcessMesh().connect({ node: "n1" });
 * const node = { id: "n1", types: ["account"], since: Date.now() };
 * const membership = await startMembership(conn, { prefix: "troupe", node, ttl: 5_000 });
 * const ownership = await createOwnership(conn, membership, { prefix: "troupe" });
 * const r = await ownership.claim("account", "alice");
 * console.log(r.ok ? "mine" : `hosted by ${r.owner}`);
 * await ownership.close();
 * await membership.close();
 * await conn.close();
 * ```
 */
export async function createOwnership(
  conn: MeshConnection,
  membership: Membership,
  options: OwnershipOptions,
): Promise<Ownership> {
  const bucket = await openDirectoryBucket(conn, `${options.prefix}_acts`, options.replicas);
  return new OwnershipImpl(bucket, membership, options.retries ?? 5);
}

class OwnershipImpl implements Ownership {
  readonly #bucket: KvBucket;
  readonly #membership: Membership;
  readonly #retries: number;
  /** Records this node wrote: key → revision. */
  readonly #claims = new Map<string, number>();
  readonly #closing = new AbortController();
  readonly #watches = new Set<{ watch: KvWatch; queue: DirectoryWatch; loop: Promise<void> }>();
  #closed = false;

  constructor(bucket: KvBucket, membership: Membership, retries: number) {
    this.#bucket = bucket;
    this.#membership = membership;
    this.#retries = retries;
  }

  async claim(type: string, id: string, options: ClaimOptions = {}): Promise<ClaimResult> {
    const self = this.#membership.self.id;
    const key = actorKey(type, id);
    const what = `${type}/${id}`;
    for (let attempt = 0; attempt <= this.#retries;) {
      this.#check(what, options.signal);
      const incarnation = crypto.randomUUID();
      const value = enc.encode(JSON.stringify({ node: self, incarnation }));
      try {
        const revision = await this.#bucket.create(key, value);
        return await this.#won(key, revision, incarnation);
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
      const entry = await this.#bucket.get(key);
      this.#check(what, options.signal);
      if (!entry || entry.operation !== "PUT") {
        attempt++; // deleted in between: create again
        continue;
      }
      const rec = parseRecord(entry);
      let takenFrom: string | undefined;
      if (rec && rec.node !== self) {
        const status = this.#membership.status(rec.node);
        if (status === "alive") return { ok: false, owner: rec.node };
        if (status === "unknown") {
          // Never heard of that node since we started: wait until we would have.
          await this.#sleep(this.#membership.settledAt() - performance.now() + 1, options.signal);
          continue;
        }
        if (!(await this.#membership.confirmDead(rec.node))) {
          // Our view lags behind the heartbeats in the bucket: the owner is alive.
          return { ok: false, owner: rec.node };
        }
        this.#check(what, options.signal);
        takenFrom = rec.node;
      }
      // Ours already (a previous incarnation on this node id), or its owner is dead:
      // compare-and-set on the revision read.
      try {
        const revision = await this.#bucket.update(key, value, entry.revision);
        return await this.#won(key, revision, incarnation, takenFrom);
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
      attempt++;
    }
    throw new ConflictError(
      `Could not claim actor "${what}": the record kept changing (${this.#retries + 1} attempts)`,
    );
  }

  async #won(
    key: string,
    revision: number,
    incarnation: string,
    takenFrom?: string,
  ): Promise<ClaimResult> {
    if (this.#closed) {
      // Closed while claiming: do not leave a record behind.
      await this.#bucket.delete(key, { revision }).catch(() => {});
      throw new ClosedError("The ownership directory is closed");
    }
    if (!this.#bucket.serializedCas) {
      // Replicated compare-and-set on nats-server < 2.9.21 can let a concurrent claim win too:
      // the later write stands; its author keeps the actor and everyone else defers to it.
      const latest = await latestAfterSettle(this.#bucket, key);
      const rec = latest && latest.operation === "PUT" ? parseRecord(latest) : undefined;
      if (
        latest && latest.revision !== revision && rec && rec.incarnation !== incarnation &&
        rec.node !== this.#membership.self.id
      ) {
        return { ok: false, owner: rec.node };
      }
    }
    this.#claims.set(key, revision);
    return takenFrom === undefined
      ? { ok: true, revision, incarnation }
      : { ok: true, revision, incarnation, takenFrom };
  }

  #check(what: string, signal: AbortSignal | undefined): void {
    if (this.#closed) throw new ClosedError("The ownership directory is closed");
    signal?.throwIfAborted();
    if (this.#membership.isFenced()) {
      throw new UnavailableError(
        `Node "${this.#membership.self.id}" is fenced: it cannot claim actor "${what}"`,
      );
    }
  }

  #sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#closing.signal.removeEventListener("abort", onAbort);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(
          signal?.aborted ? signal.reason : new ClosedError("The ownership directory is closed"),
        );
      };
      const timer = setTimeout(() => {
        done();
        resolve();
      }, Math.max(0, ms));
      this.#closing.signal.addEventListener("abort", onAbort, { once: true });
      signal?.addEventListener("abort", onAbort, { once: true });
      if (this.#closing.signal.aborted || signal?.aborted) onAbort();
    });
  }

  async release(type: string, id: string): Promise<void> {
    const key = actorKey(type, id);
    let revision = this.#claims.get(key);
    this.#claims.delete(key);
    if (revision === undefined) {
      const entry = await this.#bucket.get(key);
      if (!entry || entry.operation !== "PUT") return;
      if (parseRecord(entry)?.node !== this.#membership.self.id) return;
      revision = entry.revision;
    }
    try {
      await this.#bucket.delete(key, { revision });
    } catch (err) {
      if (!isConflict(err)) throw err; // taken over meanwhile: not ours to delete
    }
  }

  async owner(type: string, id: string): Promise<string | undefined> {
    const entry = await this.#bucket.get(actorKey(type, id));
    if (!entry || entry.operation !== "PUT") return undefined;
    return parseRecord(entry)?.node;
  }

  async locate(type: string, id: string): Promise<string | undefined> {
    const entry = await this.#bucket.get(actorKey(type, id));
    if (!entry || entry.operation !== "PUT") return undefined;
    const rec = parseRecord(entry);
    if (!rec) return undefined;
    if (rec.node === this.#membership.self.id) {
      return this.#membership.isFenced() ? undefined : rec.node;
    }
    return this.#membership.isAlive(rec.node) ? rec.node : undefined;
  }

  async releaseAll(): Promise<void> {
    const claims = [...this.#claims];
    this.#claims.clear();
    await Promise.all(
      claims.map(([key, revision]) => this.#bucket.delete(key, { revision }).catch(() => {})),
    );
  }

  watch(): DirectoryWatch {
    const queue = createEventQueue<DirectoryEvent>();
    if (this.#closed) {
      queue.stop();
      return queue;
    }
    const watch = this.#bucket.watch({ key: ">" });
    const owners = new Map<string, string>();
    const loop = (async () => {
      try {
        for await (const entry of watch) {
          const actor = parseActorKey(entry.key);
          if (!actor) continue;
          const previous = owners.get(entry.key);
          if (entry.operation === "PUT") {
            const rec = parseRecord(entry);
            if (!rec) continue;
            if (previous === rec.node) continue; // a new incarnation on the same node
            if (previous !== undefined) {
              queue.push({ type: "deactivated", actor, node: previous });
            }
            owners.set(entry.key, rec.node);
            queue.push({ type: "activated", actor, node: rec.node });
          } else if (previous !== undefined) {
            owners.delete(entry.key);
            queue.push({ type: "deactivated", actor, node: previous });
          }
        }
      } catch {
        // The watch failed (connection closed): end the stream.
      } finally {
        queue.stop();
      }
    })();
    const handle = { watch, queue, loop };
    this.#watches.add(handle);
    queue.onStop(() => {
      watch.stop();
      this.#watches.delete(handle);
    });
    return queue;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    const loops = [...this.#watches].map((w) => {
      w.queue.stop();
      return w.loop;
    });
    await this.releaseAll();
    await Promise.all(loops);
  }
}
