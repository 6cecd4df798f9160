/**
 * The in-memory {@link StoreBackend}: records live as long as the process.
 *
 * @module
 */

import { ClosedError } from "../errors.ts";
import { compareKeys, prefixEnd, storeConflict } from "./keys.ts";
import type { StoreBackend, StoredRecord } from "./types.ts";

interface Entry {
  value: Uint8Array;
  revision: number;
  expiresAt: number | undefined;
}

class Records {
  /** The last revision given out in this store. */
  revision = 0;
  readonly entries = new Map<string, Entry>();
  /** The keys of `entries`, sorted by {@link compareKeys}. */
  readonly keys: string[] = [];

  /** The index of the first key `>= key` (or `> key` when `exclusive`). */
  seek(key: string, exclusive = false): number {
    let lo = 0, hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareKeys(this.keys[mid]!, key);
      if (c < 0 || (exclusive && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  remove(key: string): void {
    if (!this.entries.delete(key)) return;
    this.keys.splice(this.seek(key), 1);
  }
}

const live = (e: Entry | undefined, now: number): e is Entry =>
  e !== undefined && (e.expiresAt === undefined || e.expiresAt > now);

const toRecord = (key: string, e: Entry): StoredRecord => ({
  key,
  value: e.value.slice(),
  revision: e.revision,
  ...(e.expiresAt === undefined ? {} : { expiresAt: e.expiresAt }),
});

/**
 * Opens an in-memory store backend: what `system.store()` uses when the journal has no
 * database of its own. Systems sharing one journal object share one memory backend.
 *
 * @example
 * ```ts
 * import { memoryStore } from "@troupe/troupe/spi";
 * const backend = memoryStore();
 * await backend.set("carts", "u1", new Uint8Array([1]), { ifRevision: 0 }, Date.now());
 * console.log(await backend.list("carts", { prefix: "u", limit: 10 }, Date.now()));
 * await backend.close();
 * ```
 */
export function memoryStore(): StoreBackend {
  return new MemoryStore();
}

class MemoryStore implements StoreBackend {
  readonly #stores = new Map<string, Records>();
  #closed = false;

  #records(store: string, what: string): Records {
    if (this.#closed) throw new ClosedError(`Cannot ${what}: the memory store is closed`);
    let r = this.#stores.get(store);
    if (!r) this.#stores.set(store, r = new Records());
    return r;
  }

  get(store: string, key: string, now: number): Promise<StoredRecord | undefined> {
    try {
      const e = this.#records(store, `get "${key}"`).entries.get(key);
      return Promise.resolve(live(e, now) ? toRecord(key, e) : undefined);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  set(
    store: string,
    key: string,
    value: Uint8Array,
    options: { readonly expiresAt?: number; readonly ifRevision?: number },
    now: number,
  ): Promise<number> {
    try {
      const r = this.#records(store, `set "${key}"`);
      const e = r.entries.get(key);
      const current = live(e, now) ? e.revision : 0;
      if (options.ifRevision !== undefined && options.ifRevision !== current) {
        throw storeConflict("set", store, key, options.ifRevision, current);
      }
      const revision = ++r.revision;
      const entry = { value: value.slice(), revision, expiresAt: options.expiresAt };
      if (!e) r.keys.splice(r.seek(key), 0, key);
      r.entries.set(key, entry);
      return Promise.resolve(revision);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  delete(
    store: string,
    key: string,
    options: { readonly ifRevision?: number },
    now: number,
  ): Promise<boolean> {
    try {
      const r = this.#records(store, `delete "${key}"`);
      const e = r.entries.get(key);
      const current = live(e, now) ? e.revision : 0;
      if (options.ifRevision !== undefined && options.ifRevision !== current) {
        throw storeConflict("delete", store, key, options.ifRevision, current);
      }
      r.remove(key);
      return Promise.resolve(current !== 0);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  list(
    store: string,
    options: { readonly prefix: string; readonly after?: string; readonly limit: number },
    now: number,
  ): Promise<StoredRecord[]> {
    try {
      const r = this.#records(store, "list records");
      const { prefix, after, limit } = options;
      const end = prefixEnd(prefix);
      let i = after !== undefined && compareKeys(after, prefix) >= 0
        ? r.seek(after, true)
        : r.seek(prefix);
      const out: StoredRecord[] = [];
      for (; i < r.keys.length && out.length < limit; i++) {
        const key = r.keys[i]!;
        if (end !== undefined && compareKeys(key, end) >= 0) break;
        const e = r.entries.get(key);
        if (live(e, now)) out.push(toRecord(key, e));
      }
      return Promise.resolve(out);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  purge(now: number, limit: number): Promise<number> {
    let n = 0;
    for (const r of this.#stores.values()) {
      for (const [key, e] of r.entries) {
        if (n >= limit) return Promise.resolve(n);
        if (!live(e, now)) {
          r.remove(key);
          n++;
        }
      }
    }
    return Promise.resolve(n);
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#stores.clear();
    return Promise.resolve();
  }
}
