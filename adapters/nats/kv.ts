/**
 * KV buckets of the NATS mesh: JetStream KV, read through the stream leader, with KV calls
 * retried while the stream has no leader. Internal, except {@link replicatedCasIsSafe}
 * (exported from `mod.ts` through `mesh.ts`).
 *
 * @module
 */

import { errors as natsErrors, headers as natsHeaders } from "@nats-io/nats-core";
import type { KV } from "@nats-io/kv";
import {
  type KvBucket,
  type KvEntry,
  type KvIncarnation,
  type KvWatch,
  MeshError,
} from "../../spi.ts";
import { EMPTY, isNoResponders, isStreamNotFound, retry } from "./_util.ts";
import { type KvHost, NatsKvWatch, startingWatches } from "./kv_watch.ts";

/**
 * Whether compare-and-set (create, update) is serialized on a replicated stream of this
 * server version: before 2.9.21 (nats-server #4320) two concurrent writes expecting the same
 * revision can both succeed on an R3 bucket (Troupe then relies on the journal's epoch fence).
 *
 * @example
 * ```ts
 * import { replicatedCasIsSafe } from "@troupe/troupe/nats";
 *
 * replicatedCasIsSafe("2.9.10"); // false
 * replicatedCasIsSafe("2.10.4"); // true
 * ```
 */
export function replicatedCasIsSafe(version: string | undefined): boolean {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version ?? "");
  if (!m) return false;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (major !== 2) return major > 2;
  if (minor !== 9) return minor > 9;
  return patch >= 21;
}

/**
 * The incarnation of a bucket from its stream's `created` time (an RFC 3339 string with up to
 * nanoseconds): the id is that string, `createdAt` its milliseconds. Internal.
 */
export function incarnationOf(created: string): KvIncarnation {
  const createdAt = Date.parse(created);
  if (!Number.isFinite(createdAt)) {
    throw new TypeError(`Cannot read the creation time "${created}" of a stream`);
  }
  return { id: String(created), createdAt };
}

/**
 * A KV bucket: a JetStream KV opened by `KvHost.kv`. Internal.
 */
export class NatsKvBucket implements KvBucket {
  readonly name: string;
  readonly incarnation: string;
  readonly serializedCas: boolean;
  readonly #conn: KvHost;
  readonly #kv: KV;
  readonly #prefix: string;

  constructor(
    conn: KvHost,
    kv: KV,
    name: string,
    incarnation: string,
    serializedCas: boolean,
  ) {
    this.#conn = conn;
    this.#kv = kv;
    this.name = name;
    this.incarnation = incarnation;
    this.serializedCas = serializedCas;
    this.#prefix = `$KV.${name}.`;
  }

  #key(key: string): void {
    if (typeof key !== "string" || !/^[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*$/.test(key)) {
      throw new TypeError(`Cannot use KV key "${key}": tokens must match [A-Za-z0-9_=-]+`);
    }
  }

  #filter(filter: string): void {
    if (
      typeof filter !== "string" ||
      !/^([A-Za-z0-9_=-]+|\*)(\.([A-Za-z0-9_=-]+|\*))*(\.>)?$|^>$/.test(filter)
    ) throw new TypeError(`Cannot use KV key filter "${filter}": invalid pattern`);
  }

  /** Runs a KV call, retrying while nothing answers (no stream leader yet). */
  async #run<T>(what: string, fn: () => Promise<T>, retryTimeouts: boolean): Promise<T> {
    const conn = this.#conn;
    if (conn.nc.isClosed() || conn.nc.isDraining()) {
      throw new MeshError("closed", `${what}: connection closed`);
    }
    const deadline = performance.now() + (conn.options.kvRetry ?? 5000);
    return await retry(
      fn,
      (err) =>
        !conn.nc.isClosed() &&
        (isNoResponders(err) || (retryTimeouts && err instanceof natsErrors.TimeoutError)),
      deadline,
      what,
    );
  }

  /** Lets watches created before a write see it (their consumers exist first). */
  async #afterWatches(): Promise<void> {
    const set = startingWatches.get(this.name);
    if (!set || set.size === 0) return;
    const starting = [...set];
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(starting),
      new Promise((r) => timer = setTimeout(r, this.#conn.options.kvRetry ?? 5000)),
    ]);
    clearTimeout(timer);
  }

  async incarnationNow(): Promise<KvIncarnation> {
    const what = `Cannot read the incarnation of bucket "${this.name}"`;
    try {
      const info = await this.#run(what, async () => {
        const jsm = await this.#conn.jsm();
        return await jsm.streams.info(`KV_${this.name}`);
      }, true);
      return incarnationOf(info.created);
    } catch (err) {
      if (isStreamNotFound(err)) {
        throw new MeshError("no_responders", `${what}: it does not exist`, err);
      }
      throw err;
    }
  }

  async get(key: string): Promise<KvEntry | null> {
    this.#key(key);
    const e = await this.#run(
      `Cannot get "${key}" from bucket "${this.name}"`,
      () => this.#kv.get(key),
      true,
    );
    if (!e || e.operation !== "PUT") return null;
    return { key, value: e.value, revision: e.revision, operation: "PUT" };
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    this.#key(key);
    await this.#afterWatches();
    return await this.#run(
      `Cannot put "${key}" in bucket "${this.name}"`,
      () => this.#kv.put(key, value),
      false,
    );
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    this.#key(key);
    await this.#afterWatches();
    return await this.#run(
      `Cannot create "${key}" in bucket "${this.name}"`,
      () => this.#kv.create(key, value),
      false,
    );
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    this.#key(key);
    if (!(Number.isInteger(revision) && revision >= 0)) {
      throw new RangeError(`Cannot update "${key}" at revision ${revision}`);
    }
    await this.#afterWatches();
    return await this.#run(
      `Cannot update "${key}" in bucket "${this.name}" at revision ${revision}`,
      () => this.#kv.put(key, value, { previousSeq: revision }),
      false,
    );
  }

  async delete(key: string, options?: { revision?: number }): Promise<void> {
    this.#key(key);
    await this.#afterWatches();
    const h = natsHeaders();
    h.set("KV-Operation", "DEL");
    const expected = options?.revision;
    await this.#run(
      `Cannot delete "${key}" in bucket "${this.name}"`,
      () =>
        this.#conn.js.publish(
          this.#prefix + key,
          EMPTY,
          expected === undefined
            ? { headers: h }
            : { headers: h, expect: { lastSubjectSequence: expected } },
        ),
      false,
    );
  }

  async keys(filter = ">"): Promise<string[]> {
    this.#filter(filter);
    return await this.#run(`Cannot list keys of bucket "${this.name}"`, async () => {
      const out: string[] = [];
      for await (const k of await this.#kv.keys(filter)) out.push(k);
      return out;
    }, true);
  }

  watch(options?: { key?: string; initial?: boolean }): KvWatch {
    if (this.#conn.nc.isClosed() || this.#conn.nc.isDraining()) {
      throw new MeshError("closed", `Cannot watch bucket "${this.name}": connection closed`);
    }
    const key = options?.key ?? ">";
    this.#filter(key);
    return new NatsKvWatch(this.#conn, this.name, key, options?.initial ?? true);
  }
}
