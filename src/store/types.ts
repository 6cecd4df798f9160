/**
 * The record store: named key-value stores with revisions, compare-and-set and expiry.
 *
 * Two layers:
 * - {@link Store} is what `system.store(name)` returns: typed values (through the system's
 *   codec), argument checks, paging. It is built once, in `src/store/store.ts`, on
 * - the Store port, {@link StoreBackend}: records as encoded bytes, with the clock passed
 *   in. Implementations: `memoryStore()` (in `memory.ts`) and `libsqlStore` (in
 *   `adapters/libsql`, on the journal's database). Both pass the conformance suite in
 *   `src/store/conformance.ts`.
 *
 * @module
 */

/**
 * A record as `get` and `list` return it.
 *
 * @example
 * ```ts
 * import type { StoreRecord } from "@troupe/troupe";
 * const r: StoreRecord<{ items: string[] }> = { key: "u1", value: { items: [] }, revision: 1 };
 * ```
 */
export interface StoreRecord<V = unknown> {
  /** The record's key. */
  readonly key: string;
  /** The decoded value. */
  readonly value: V;
  /**
   * The revision of this write: strictly increasing per key, never reused (not even after a
   * delete). Revisions of one key may have gaps.
   */
  readonly revision: number;
  /** When the record expires, wall-clock ms since the epoch; absent when it does not. */
  readonly expiresAt?: number;
}

/**
 * Options of {@link Store.set}.
 *
 * @example
 * ```ts
 * import type { StoreSetOptions } from "@troupe/troupe";
 * const options: StoreSetOptions = { ttl: 60_000, ifRevision: 0 }; // create, expiring in a minute
 * ```
 */
export interface StoreSetOptions {
  /**
   * Time to live in ms (positive, finite): the record expires this long after the write.
   * A write without `ttl` makes the record permanent (it clears an earlier expiry).
   */
  readonly ttl?: number;
  /**
   * Compare-and-set: write only if the record's current revision is this one; `0` means the
   * record must not exist (expired records do not exist). Otherwise the write is refused
   * with `ConflictError` (code `conflict`) and nothing changes.
   */
  readonly ifRevision?: number;
}

/**
 * Options of {@link Store.delete}.
 *
 * @example
 * ```ts
 * import type { StoreDeleteOptions } from "@troupe/troupe";
 * const options: StoreDeleteOptions = { ifRevision: 2 };
 * ```
 */
export interface StoreDeleteOptions {
  /**
   * Delete only if the record's current revision is this one (`0`: only if there is none,
   * which deletes nothing); otherwise `ConflictError` (code `conflict`).
   */
  readonly ifRevision?: number;
}

/**
 * Options of {@link Store.list}.
 *
 * @example
 * ```ts
 * import type { StoreListOptions } from "@troupe/troupe";
 * const page: StoreListOptions = { prefix: "user:", after: "user:42", limit: 100 };
 * ```
 */
export interface StoreListOptions {
  /** Only keys that start with this string (matched literally). @default {""} */
  readonly prefix?: string;
  /** Only keys after this one (exclusive): the last key of the previous page. */
  readonly after?: string;
  /**
   * At most this many records, 1 to 1000.
   * @default {all of them, fetched in pages}
   */
  readonly limit?: number;
}

/**
 * A named key-value store, shared by every node of a cluster that uses the same database:
 * from `system.store(name)`.
 *
 * Keys are non-empty strings of at most 512 bytes in UTF-8 (no lone surrogates, no NUL),
 * ordered by Unicode code point. Values are anything the codec carries (the same types as
 * actor payloads), at most the system's `maxPayload` once encoded. Expired records are never
 * returned and are purged in the background.
 *
 * @example
 * ```ts
 * import { createSystem } from "@troupe/troupe";
 * const system = await createSystem();
 * const carts = system.store<{ items: string[] }>("carts");
 * const { revision } = await carts.set("u1", { items: [] }, { ttl: 60_000 });
 * await carts.set("u1", { items: ["apple"] }, { ifRevision: revision });
 * console.log((await carts.get("u1"))?.value.items); // ["apple"]
 * for await (const r of carts.list({ prefix: "u" })) console.log(r.key, r.revision);
 * await system.close();
 * ```
 */
export interface Store<V = unknown> {
  /** The store's name. */
  readonly name: string;
  /** The live record under `key`, or `undefined` (absent or expired). */
  get(key: string): Promise<StoreRecord<V> | undefined>;
  /**
   * Writes `value` under `key` and resolves with the new revision (and expiry). Rejects with
   * `ConflictError` when `ifRevision` does not match, `BadPayloadError` when the encoded
   * value is larger than `maxPayload`, `TypeError`/`RangeError` for bad arguments.
   */
  set(
    key: string,
    value: V,
    options?: StoreSetOptions,
  ): Promise<{ readonly revision: number; readonly expiresAt?: number }>;
  /**
   * Deletes the record under `key`. Resolves `true` when a live record was deleted, `false`
   * when there was none. Rejects with `ConflictError` when `ifRevision` does not match.
   */
  delete(key: string, options?: StoreDeleteOptions): Promise<boolean>;
  /**
   * Live records in key order (by code point), fetched in pages with keyset pagination: a
   * write during the iteration is seen if its key is after the last one yielded. Bad options
   * throw (`TypeError`/`RangeError`) at the call, before any iteration.
   */
  list(options?: StoreListOptions): AsyncIterable<StoreRecord<V>>;
}

/**
 * A record as the port stores it: the value is encoded.
 *
 * @example
 * ```ts
 * import type { StoredRecord } from "@troupe/troupe/spi";
 * const r: StoredRecord = { key: "u1", value: new Uint8Array([0xc0]), revision: 3 };
 * ```
 */
export interface StoredRecord {
  /** The key. */
  readonly key: string;
  /** The encoded value. */
  readonly value: Uint8Array;
  /** Its revision. */
  readonly revision: number;
  /** Expiry, wall-clock ms since the epoch; absent when it does not expire. */
  readonly expiresAt?: number;
}

/**
 * The Store port: where records live. Keys and names arrive checked, values encoded, and
 * `now` (wall-clock ms) is passed in: a record is live while it has no `expiresAt` or
 * `expiresAt > now`; an expired record behaves exactly like an absent one.
 *
 * Every method may be called concurrently, from several nodes sharing one database; each
 * write is atomic, and of concurrent compare-and-set writes on one revision exactly one
 * succeeds.
 *
 * @example
 * ```ts
 * import { memoryStore, type StoreBackend } from "@troupe/troupe/spi";
 * const backend: StoreBackend = memoryStore();
 * const revision = await backend.set("carts", "u1", new Uint8Array([1]), {}, Date.now());
 * console.log((await backend.get("carts", "u1", Date.now()))?.revision === revision); // true
 * await backend.close();
 * ```
 */
export interface StoreBackend {
  /** The live record of `store` under `key`, or `undefined`. */
  get(store: string, key: string, now: number): Promise<StoredRecord | undefined>;
  /**
   * Writes a record and resolves with its revision: greater than every revision this key
   * has had, also before a delete. With `ifRevision`, writes only if the live record has
   * that revision (`0`: if there is no live record), else rejects with `ConflictError`.
   * Without `expiresAt` the record does not expire.
   */
  set(
    store: string,
    key: string,
    value: Uint8Array,
    options: { readonly expiresAt?: number; readonly ifRevision?: number },
    now: number,
  ): Promise<number>;
  /**
   * Deletes the record (an expired one too, silently) and resolves `true` when a live one was
   * deleted. With `ifRevision`, deletes only if the live record has that revision (`0`: only
   * checks there is none), else rejects with `ConflictError`.
   */
  delete(
    store: string,
    key: string,
    options: { readonly ifRevision?: number },
    now: number,
  ): Promise<boolean>;
  /**
   * One page of live records in key order (Unicode code point order, i.e. UTF-8 byte
   * order): keys that start with `prefix` (literally) and, when `after` is given, sort after
   * it; at most `limit` of them.
   */
  list(
    store: string,
    options: { readonly prefix: string; readonly after?: string; readonly limit: number },
    now: number,
  ): Promise<StoredRecord[]>;
  /**
   * Removes at most `limit` records of any store that expired at or before `now`, and
   * resolves with how many it removed.
   */
  purge(now: number, limit: number): Promise<number>;
  /** Releases what it holds (not a shared database). Idempotent. */
  close(): Promise<void>;
}

/**
 * A journal (or any object) that can open a {@link StoreBackend} on its own database. A
 * system whose journal offers this keeps its record stores there: `libsqlJournal` does, so
 * `system.store()` shares the journal's database, connection and busy handling.
 *
 * @example
 * ```ts
 * import { memoryStore, type StoreSource } from "@troupe/troupe/spi";
 * const source: StoreSource = { openStore: () => memoryStore() };
 * ```
 */
export interface StoreSource {
  /** Opens a store backend on this object's database. */
  openStore(): StoreBackend;
}
