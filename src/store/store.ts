/**
 * The record store as users see it: {@link openStore} puts typed values, argument checks and
 * paging on a {@link StoreBackend}; {@link Stores} is what a system holds (which backend,
 * one `Store` per name, the background purge of expired records).
 *
 * @module
 */

import { checkPayloadSize } from "../codec/mod.ts";
import type { Codec } from "../codec/types.ts";
import { ClosedError } from "../errors.ts";
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import { memoryStore } from "./memory.ts";
import type {
  Store,
  StoreBackend,
  StoreDeleteOptions,
  StoredRecord,
  StoreListOptions,
  StoreRecord,
  StoreSetOptions,
  StoreSource,
} from "./types.ts";

/** Store names: letters, digits, `_`, `.`, `-`; 1 to 64 characters. */
export const STORE_NAME: RegExp = /^[A-Za-z0-9_.-]{1,64}$/;
/** The longest key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 512;
/** The largest `limit` of a list call. */
export const MAX_LIST_LIMIT = 1000;
/** Records fetched per page while listing. */
const PAGE = 200;

const encoder = new TextEncoder();

/**
 * Throws a `TypeError` unless `name` is a valid store name.
 *
 * @example
 * ```ts
 * import { checkStoreName } from "./store.ts";
 * checkStoreName("carts"); // fine
 * ```
 */
export function checkStoreName(name: unknown): asserts name is string {
  if (typeof name !== "string" || !STORE_NAME.test(name)) {
    throw new TypeError(
      `Store name must match ${STORE_NAME} (letters, digits, "_", ".", "-"; 1 to 64), got ${
        quote(name)
      }`,
    );
  }
}

function quote(v: unknown): string {
  if (typeof v !== "string") return v === null ? "null" : typeof v;
  return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
}

/** Throws unless `key` is a valid key (or, with `allowEmpty`, a prefix or bound). */
function checkKey(store: string, key: unknown, what: string, allowEmpty = false): string {
  if (typeof key !== "string") {
    throw new TypeError(`A ${what} in store "${store}" must be a string, got ${quote(key)}`);
  }
  if (key === "" && !allowEmpty) {
    throw new TypeError(`A ${what} in store "${store}" must not be empty`);
  }
  if (!key.isWellFormed()) {
    throw new TypeError(
      `A ${what} in store "${store}" must be well-formed Unicode (it has a lone surrogate): ${
        quote(key)
      }`,
    );
  }
  if (key.includes("\0")) {
    throw new TypeError(`A ${what} in store "${store}" must not contain NUL: ${quote(key)}`);
  }
  // A UTF-16 code unit is at most 3 UTF-8 bytes: count only when it may be too long.
  if (key.length * 3 > MAX_KEY_BYTES) {
    const bytes = encoder.encode(key).byteLength;
    if (bytes > MAX_KEY_BYTES) {
      throw new RangeError(
        `A ${what} in store "${store}" must be at most ${MAX_KEY_BYTES} bytes in UTF-8, got ${bytes}: ${
          quote(key)
        }`,
      );
    }
  }
  return key;
}

function checkRevision(store: string, key: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(
      `ifRevision for "${key}" in store "${store}" must be a non-negative integer, got ${
        String(v)
      }`,
    );
  }
  return v;
}

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Encodes and decodes values. */
  readonly codec: Codec;
  /** The largest encoded value, bytes. */
  readonly maxPayload: number;
  /** The wall clock, ms since the epoch. @default {systemClock.now} */
  readonly now?: () => number;
  /** Throws when the owner is closed (called before every operation). */
  readonly check?: () => void;
}

/**
 * The {@link Store} named `name` on `backend`: checks arguments, encodes values with
 * `codec`, bounds them by `maxPayload`, and pages `list`.
 *
 * @example
 * ```ts
 * import { msgpack } from "../codec/mod.ts";
 * import { memoryStore } from "./memory.ts";
 * import { openStore } from "./store.ts";
 * const carts = openStore<string[]>(memoryStore(), "carts", { codec: msgpack, maxPayload: 1 << 20 });
 * await carts.set("u1", ["apple"]);
 * ```
 */
export function openStore<V = unknown>(
  backend: StoreBackend,
  name: string,
  options: OpenStoreOptions,
): Store<V> {
  checkStoreName(name);
  const { codec, maxPayload } = options;
  const now = options.now ?? (() => systemClock.now());
  const check = options.check ?? (() => {});
  const decode = (r: StoredRecord): StoreRecord<V> => ({
    key: r.key,
    value: codec.decode(r.value) as V,
    revision: r.revision,
    ...(r.expiresAt === undefined ? {} : { expiresAt: r.expiresAt }),
  });

  return {
    name,
    async get(key) {
      check();
      checkKey(name, key, "key");
      const r = await backend.get(name, key, now());
      return r && decode(r);
    },
    async set(key, value, setOptions: StoreSetOptions = {}) {
      check();
      checkKey(name, key, "key");
      const ifRevision = checkRevision(name, key, setOptions.ifRevision);
      const ttl = setOptions.ttl;
      if (ttl !== undefined && !(typeof ttl === "number" && Number.isFinite(ttl) && ttl > 0)) {
        throw new RangeError(
          `ttl for "${key}" in store "${name}" must be a positive finite number of ms, got ${
            String(ttl)
          }`,
        );
      }
      const bytes = codec.encode(value);
      checkPayloadSize(bytes.byteLength, maxPayload, `Value of "${key}" in store "${name}"`);
      const t = now();
      const expiresAt = ttl === undefined ? undefined : Math.ceil(t + ttl);
      const revision = await backend.set(name, key, bytes, {
        ...(expiresAt === undefined ? {} : { expiresAt }),
        ...(ifRevision === undefined ? {} : { ifRevision }),
      }, t);
      return expiresAt === undefined ? { revision } : { revision, expiresAt };
    },
    async delete(key, deleteOptions: StoreDeleteOptions = {}) {
      check();
      checkKey(name, key, "key");
      const ifRevision = checkRevision(name, key, deleteOptions.ifRevision);
      return await backend.delete(
        name,
        key,
        ifRevision === undefined ? {} : { ifRevision },
        now(),
      );
    },
    list(listOptions: StoreListOptions = {}) {
      check();
      const prefix = checkKey(name, listOptions.prefix ?? "", "prefix", true);
      let after = listOptions.after === undefined
        ? undefined
        : checkKey(name, listOptions.after, "list bound (after)", true);
      const limit = listOptions.limit;
      if (
        limit !== undefined &&
        !(Number.isInteger(limit) && limit >= 1 && limit <= MAX_LIST_LIMIT)
      ) {
        throw new RangeError(
          `limit of a list in store "${name}" must be an integer from 1 to ${MAX_LIST_LIMIT}, got ${
            String(limit)
          }`,
        );
      }
      return (async function* list(): AsyncGenerator<StoreRecord<V>> {
        let left = limit ?? Infinity;
        while (left > 0) {
          check();
          const size = Math.min(left, PAGE);
          const page = await backend.list(name, {
            prefix,
            ...(after === undefined ? {} : { after }),
            limit: size,
          }, now());
          for (const r of page) yield decode(r);
          left -= page.length;
          if (page.length < size) return;
          after = page[page.length - 1]!.key;
        }
      })();
    },
  };
}

/** Options of {@link Stores}. */
export interface StoresOptions {
  /**
   * Where records live: a backend (not closed by {@link Stores.close}), or a journal that may
   * offer one ({@link StoreSource}); without one, a memory backend shared by every `Stores` of
   * the same journal object.
   */
  readonly backend?: StoreBackend;
  /** The system's journal. */
  readonly journal?: object;
  /** Encodes values. */
  readonly codec: Codec;
  /** The largest encoded value, bytes. */
  readonly maxPayload: number;
  /** The system's clock: records' expiry (its `now()`) and the purge's timer. @default {systemClock} */
  readonly clock?: Clock;
  /** Pause between two purges of expired records, ms. @default {30000} */
  readonly purgeIntervalMs?: number;
  /** At most this many records removed by one purge. @default {1000} */
  readonly purgeBatch?: number;
  /** Told about a failed purge (it is tried again next interval). */
  readonly onError?: (message: string, err: unknown) => void;
}

const sharedMemory = new WeakMap<object, StoreBackend>();

/**
 * The record stores of one system: opens the backend on first use, hands out one
 * {@link Store} per name, and purges expired records in the background (at most
 * `purgeBatch` per `purgeIntervalMs`; started by the first store opened, stopped by
 * {@link Stores.close}).
 *
 * @example
 * ```ts
 * import { msgpack } from "../codec/mod.ts";
 * import { Stores } from "./store.ts";
 * const stores = new Stores({ codec: msgpack, maxPayload: 1 << 20 });
 * await stores.open("carts").set("u1", { items: [] }, { ttl: 60_000 });
 * await stores.close();
 * ```
 */
export class Stores {
  readonly #options: StoresOptions;
  readonly #open = new Map<string, Store<unknown>>();
  #backend: StoreBackend | undefined;
  #owned = false;
  #closed = false;
  #timer: TimerId | undefined;
  #purging: Promise<void> | undefined;
  readonly #clock: Clock;

  /** @param options Which backend, codec and limits; see {@link StoresOptions}. */
  constructor(options: StoresOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
  }

  /** The store named `name` (the same object on every call). */
  open<V = unknown>(name: string): Store<V> {
    if (this.#closed) {
      throw new ClosedError(`Cannot open store ${quote(name)}: the system is closed`);
    }
    checkStoreName(name);
    let store = this.#open.get(name);
    if (!store) {
      store = openStore(this.#backendNow(), name, {
        codec: this.#options.codec,
        maxPayload: this.#options.maxPayload,
        now: () => this.#clock.now(),
        check: () => {
          if (this.#closed) {
            throw new ClosedError(`Cannot use store "${name}": the system is closed`);
          }
        },
      });
      this.#open.set(name, store);
      this.#schedule(this.#options.purgeIntervalMs ?? 30_000);
    }
    return store as Store<V>;
  }

  #backendNow(): StoreBackend {
    if (this.#backend) return this.#backend;
    const { backend, journal } = this.#options;
    if (backend) return this.#backend = backend;
    const source = journal as Partial<StoreSource> | undefined;
    if (typeof source?.openStore === "function") {
      this.#owned = true;
      return this.#backend = source.openStore();
    }
    const key = journal ?? this;
    let memory = sharedMemory.get(key);
    if (!memory) sharedMemory.set(key, memory = memoryStore());
    return this.#backend = memory;
  }

  #schedule(ms: number): void {
    if (this.#closed || this.#timer !== undefined || this.#purging) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#purging = this.#purge().finally(() => (this.#purging = undefined));
    }, ms);
  }

  /** Runs one purge now and resolves with how many records it removed. */
  async purge(): Promise<number> {
    const backend = this.#backend;
    if (!backend || this.#closed) return 0;
    return await backend.purge(this.#clock.now(), this.#options.purgeBatch ?? 1000);
  }

  async #purge(): Promise<void> {
    const interval = this.#options.purgeIntervalMs ?? 30_000;
    let next = interval;
    try {
      const n = await this.purge();
      // A full batch: more are waiting, come back soon (each purge stays bounded).
      if (n >= (this.#options.purgeBatch ?? 1000)) next = Math.min(interval, 100);
    } catch (err) {
      if (!this.#closed) this.#options.onError?.("Purging expired store records failed", err);
    }
    this.#purging = undefined;
    this.#schedule(next);
  }

  /** Stops the purge, waits for one in flight, and closes a backend it opened. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#purging;
    if (this.#owned) await this.#backend?.close();
  }
}
