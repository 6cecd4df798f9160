/**
 * `fromKv(bucket)`: config shared by every node of the mesh, in a key-value bucket of the mesh.
 *
 * Layout: one KV key per written path (`limits.maxTransfer`), its value JSON text. The document
 * is rebuilt by applying the entries in revision order, each replacing the subtree at its path,
 * so the last write wins whether it was to a parent or a child path. Revisions are global to the
 * bucket, so every node that has applied revision `r` holds the same document.
 *
 * @module
 */

import { ClosedError } from "../errors.ts";
import type { KvBucket, KvEntry, KvWatch } from "../mesh/types.ts";
import { type ConfigTree, setAt, splitPath } from "./_tree.ts";
import type { ConfigSource, ConfigSourceContext, RunningConfigSource } from "./types.ts";

/** Options of {@link fromKv}. */
export interface FromKvOptions {
  /** Replicas of the bucket (NATS cluster size permitting). @default {the mesh's choice} */
  replicas?: number;
  /**
   * How long `config.set()` waits for this node's watch to apply its write, ms.
   * @default {10000}
   */
  applyTimeout?: number;
}

const BUCKET = /^[A-Za-z0-9_-]+$/;
const SEGMENT = /^[A-Za-z0-9_-]+$/;

/**
 * Config shared by the whole cluster, kept in the mesh's key-value store (bucket
 * `<prefix>_cfg_<bucket>`; on the in-process mesh too). `system.config.set(path, value)` writes
 * it, and every node's watch applies the change, at the same revision, usually within
 * milliseconds. `health()` shows the latest revision applied.
 *
 * @example
 * ```ts
 * import { createSystem, fromKv, inProcessMesh } from "@troupe/troupe";
 * const mesh = inProcessMesh();
 * const a = await createSystem({ mesh, config: { sources: [fromKv("app-config")] } });
 * const b = await createSystem({ mesh, config: { sources: [fromKv("app-config")] } });
 * const revision = await a.config.set("limits.maxTransfer", 500);
 * // b applies revision `revision` moments later: b.config.get("limits.maxTransfer") === 500
 * console.log(revision);
 * await a.close();
 * await b.close();
 * ```
 */
export function fromKv(bucket: string, options: FromKvOptions = {}): ConfigSource {
  if (typeof bucket !== "string" || !BUCKET.test(bucket)) {
    throw new TypeError(`fromKv(): bucket must match ${BUCKET}, got "${bucket}"`);
  }
  return {
    name: `kv:${bucket}`,
    async start(context) {
      if (!context.mesh) {
        throw new Error(`fromKv("${bucket}") needs a mesh: use it in createSystem({ config })`);
      }
      const kv = await context.mesh.kv(
        `${context.prefix}_cfg_${bucket}`,
        options.replicas === undefined
          ? { history: 1 }
          : { history: 1, replicas: options.replicas },
      );
      const source = new KvSource(kv, context, options.applyTimeout ?? 10_000);
      await source.start();
      return source;
    },
  };
}

interface Waiter {
  readonly revision: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

class KvSource implements RunningConfigSource {
  readonly #kv: KvBucket;
  readonly #context: ConfigSourceContext;
  readonly #applyTimeout: number;
  /** Latest good entry of each key. */
  readonly #entries = new Map<string, { revision: number; value: unknown }>();
  /** Latest revision seen of each key (good or not), to skip replays. */
  readonly #seen = new Map<string, number>();
  readonly #waiters = new Set<Waiter>();
  #watch: KvWatch | undefined;
  #loop: Promise<void> = Promise.resolve();
  #applied = 0;
  #stopped = false;

  constructor(kv: KvBucket, context: ConfigSourceContext, applyTimeout: number) {
    this.#kv = kv;
    this.#context = context;
    this.#applyTimeout = applyTimeout;
  }

  async start(): Promise<void> {
    // Watch first (live changes only), then read what is there: a change made in between shows
    // in both and is applied once (by revision).
    const watch = this.#watch = this.#kv.watch({ key: ">", initial: false });
    try {
      await watch.ready;
      const keys = await this.#kv.keys();
      const entries = await Promise.all(keys.map((k) => this.#kv.get(k)));
      const bad: string[] = [];
      for (const e of entries) {
        if (!e) continue;
        if (!this.#take(e)) bad.push(e.key);
      }
      const top = Math.max(0, ...entries.map((e) => e?.revision ?? 0));
      this.#applied = top;
      this.#context.update(this.#document(), { revision: top });
      if (bad.length > 0) {
        this.#context.fail(`Entries ${bad.map((k) => `"${k}"`).join(", ")} are not JSON`, {
          revision: top,
        });
      }
    } catch (err) {
      watch.stop();
      throw err;
    }
    this.#loop = (async () => {
      try {
        for await (const e of watch) {
          if (this.#stopped) break;
          this.#onEntry(e);
        }
      } catch (err) {
        if (!this.#stopped) {
          this.#context.logger.warn(`Config watch of "${this.#kv.name}" failed: ${err}`);
        }
      }
    })();
  }

  #onEntry(e: KvEntry): void {
    if (e.revision <= (this.#seen.get(e.key) ?? 0)) return;
    const ok = this.#take(e);
    this.#applied = Math.max(this.#applied, e.revision);
    if (ok) this.#context.update(this.#document(), { revision: e.revision });
    else this.#context.fail(`Entry "${e.key}" is not JSON`, { revision: e.revision });
    for (const w of [...this.#waiters]) {
      if (w.revision <= this.#applied) w.resolve();
    }
  }

  /** Records an entry; false when its value does not parse (the key's last good value stays). */
  #take(e: KvEntry): boolean {
    this.#seen.set(e.key, e.revision);
    if (e.operation !== "PUT") {
      this.#entries.delete(e.key);
      return true;
    }
    try {
      const value = JSON.parse(new TextDecoder().decode(e.value));
      this.#entries.set(e.key, { revision: e.revision, value });
      return true;
    } catch {
      return false;
    }
  }

  #document(): ConfigTree {
    const sorted = [...this.#entries].sort((a, b) => a[1].revision - b[1].revision);
    let tree: ConfigTree = {};
    for (const [key, { value }] of sorted) tree = setAt(tree, key.split("."), value);
    return tree;
  }

  async set(path: string, value: unknown): Promise<number> {
    const segments = splitPath(path);
    const badSegment = segments.find((s) => !SEGMENT.test(s));
    if (badSegment !== undefined) {
      throw new TypeError(
        `config.set(): a KV path segment must match ${SEGMENT}, got "${badSegment}" in "${path}"`,
      );
    }
    const revision = await this.#kv.put(
      segments.join("."),
      new TextEncoder().encode(JSON.stringify(value)),
    );
    await this.#appliedAt(revision);
    return revision;
  }

  /** Resolves once the watch has applied `revision` (bounded by `applyTimeout`). */
  #appliedAt(revision: number): Promise<void> {
    if (this.#applied >= revision) return Promise.resolve();
    const clock = this.#context.clock;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        revision,
        resolve: () => {
          clock.clearTimeout(timer);
          this.#waiters.delete(waiter);
          resolve();
        },
        reject: (err) => {
          clock.clearTimeout(timer);
          this.#waiters.delete(waiter);
          reject(err);
        },
      };
      const timer = clock.setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `config.set(): revision ${revision} was written but not seen by this node within ${this.#applyTimeout} ms`,
          ),
        );
      }, this.#applyTimeout);
      this.#waiters.add(waiter);
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#watch?.stop();
    for (const w of [...this.#waiters]) w.reject(new ClosedError("The config is closed"));
    await this.#loop;
  }
}
