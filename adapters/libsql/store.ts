/**
 * The libSQL {@link StoreBackend}: record stores in the journal's database (tables
 * `store_records` and `store_floors`), on the journal's connection and with its handling
 * of a busy database.
 *
 * @module
 */

import type { Client, InStatement, InValue } from "@libsql/client/node";
import { ClosedError, UnavailableError } from "../../src/errors.ts";
import { prefixEnd, storeConflict } from "../../src/store/keys.ts";
import type { StoreBackend, StoredRecord } from "../../src/store/types.ts";
import { bytes, libsqlJournal, type LibsqlJournalOptions } from "./journal.ts";

/**
 * The version of the record store's tables, recorded in `troupe_meta`
 * (`key = 'store_schema_version'`).
 *
 * @example
 * ```ts
 * import { STORE_SCHEMA_VERSION } from "@troupe/troupe/libsql";
 * console.log(STORE_SCHEMA_VERSION); // 1
 * ```
 */
export const STORE_SCHEMA_VERSION = 1;

/**
 * What the store needs of a database connection: the journal's, which opens the database on
 * first use and runs each call again while the database is busy, without blocking the event
 * loop for long (see `busyTimeoutMs` of `libsqlJournal`).
 */
export interface LibsqlRunner {
  /** The database URL, without its query string (for messages). */
  readonly url: string;
  /**
   * Runs `fn` on the open client, retrying while the database is busy; rejects with the
   * journal's typed errors (`unavailable`, `closed`, `internal`), saying `what` failed.
   */
  run<T>(what: string, fn: (client: Client) => Promise<T>): Promise<T>;
}

const DDL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS store_records (store TEXT NOT NULL, key TEXT NOT NULL,
    value BLOB NOT NULL, revision INTEGER NOT NULL, expires_at INTEGER,
    PRIMARY KEY (store, key))`,
  `CREATE INDEX IF NOT EXISTS store_records_expiry ON store_records (expires_at)
    WHERE expires_at IS NOT NULL`,
  `CREATE TABLE IF NOT EXISTS store_floors (store TEXT PRIMARY KEY,
    revision INTEGER NOT NULL) WITHOUT ROWID`,
];

/** The condition "this record is live" on `store_records`, with `now` as its argument. */
const LIVE = "(expires_at IS NULL OR expires_at > ?)";

/**
 * A {@link StoreBackend} on a connection (the journal's, from `libsqlJournal().openStore()`).
 * Closing it does not close the connection.
 *
 * Records live in `store_records(store, key, value, revision, expires_at)`. A write of an
 * existing key takes its revision + 1; a new key takes its store's floor + 1, where
 * `store_floors` holds, per store, the highest revision ever deleted or purged there; so a
 * key's revision only grows, also across a delete, and a plain write touches one table.
 * Every write runs in one `BEGIN IMMEDIATE` transaction (libSQL "write" batch) with its
 * revision check in SQL, so of concurrent compare-and-set writers, from any process sharing
 * the database, exactly one wins.
 *
 * @example
 * ```ts
 * import { libsqlJournal } from "@troupe/troupe/libsql";
 * const journal = libsqlJournal({ url: ":memory:" });
 * const store = journal.openStore(); // the same as storeOnConnection(<the journal's runner>)
 * await store.set("carts", "u1", new Uint8Array([1]), {}, Date.now());
 * await journal.close();
 * ```
 */
export function storeOnConnection(runner: LibsqlRunner): StoreBackend {
  return new LibsqlStore(runner);
}

/**
 * Options of {@link libsqlStore}: those of `libsqlJournal`, whose connection it opens.
 *
 * @example
 * ```ts
 * import type { LibsqlStoreOptions } from "@troupe/troupe/libsql";
 * const options: LibsqlStoreOptions = { url: "file:./data/troupe.db" };
 * ```
 */
export type LibsqlStoreOptions = LibsqlJournalOptions;

/**
 * Opens a record store backend on a libSQL database by itself, for a system given as
 * `createSystem({ store: libsqlStore({ url }) })` or used directly. Usually not needed: a
 * system with a libSQL journal keeps its stores in the journal's database already. It opens
 * the database as `libsqlJournal` does (WAL, busy handling, the journal's tables too), and
 * closing it closes that connection.
 *
 * @example
 * ```ts
 * import { libsqlStore } from "@troupe/troupe/libsql";
 * const backend = libsqlStore({ url: ":memory:" });
 * const rev = await backend.set("carts", "u1", new Uint8Array([1]), { ifRevision: 0 }, Date.now());
 * console.log(rev); // 1
 * await backend.close();
 * ```
 */
export function libsqlStore(options: LibsqlStoreOptions): StoreBackend {
  const journal = libsqlJournal(options);
  const store = journal.openStore();
  return {
    get: (...args) => store.get(...args),
    set: (...args) => store.set(...args),
    delete: (...args) => store.delete(...args),
    list: (...args) => store.list(...args),
    purge: (...args) => store.purge(...args),
    close: async () => {
      await store.close();
      await journal.close();
    },
  };
}

/** The revision check of a write as SQL on `store_records`, with its arguments. */
function check(store: string, key: string, ifRevision: number | undefined, now: number) {
  if (ifRevision === undefined) return { sql: "1", args: [] as InValue[] };
  if (ifRevision === 0) {
    return {
      sql: `NOT EXISTS (SELECT 1 FROM store_records WHERE store = ? AND key = ? AND ${LIVE})`,
      args: [store, key, now] as InValue[],
    };
  }
  return {
    sql: `EXISTS (SELECT 1 FROM store_records WHERE store = ? AND key = ? AND revision = ?
          AND ${LIVE})`,
    args: [store, key, ifRevision, now] as InValue[],
  };
}

/** Reads the live revision (0 when none), for the message of a conflict. */
function current(store: string, key: string, now: number): InStatement {
  return {
    sql: `SELECT revision FROM store_records WHERE store = ? AND key = ? AND ${LIVE}`,
    args: [store, key, now],
  };
}

function toRecord(r: Record<string, unknown>): StoredRecord {
  const expiresAt = r.expires_at;
  return {
    key: String(r.key),
    value: bytes(r.value),
    revision: Number(r.revision),
    ...(expiresAt === null || expiresAt === undefined ? {} : { expiresAt: Number(expiresAt) }),
  };
}

class LibsqlStore implements StoreBackend {
  readonly #db: LibsqlRunner;
  #schema: Promise<void> | undefined;
  #schemaReady = false;
  #closed = false;

  constructor(runner: LibsqlRunner) {
    this.#db = runner;
  }

  /** Runs `fn` once the tables exist (created on first use, by whichever process is first). */
  async #run<T>(what: string, fn: (client: Client) => Promise<T>): Promise<T> {
    if (this.#closed) {
      throw new ClosedError(`Cannot ${what}: the record store on ${this.#db.url} is closed`);
    }
    if (!this.#schemaReady) {
      this.#schema ??= this.#createTables().then(
        () => void (this.#schemaReady = true),
        (err) => {
          this.#schema = undefined; // the next call tries again
          throw err;
        },
      );
      await this.#schema;
    }
    return await this.#db.run(what, fn);
  }

  async #createTables(): Promise<void> {
    const rs = await this.#db.run("create the record store tables", (c) =>
      c.batch([
        ...DDL,
        {
          sql: `INSERT INTO troupe_meta (key, value) VALUES ('store_schema_version', ?)
                ON CONFLICT (key) DO NOTHING`,
          args: [STORE_SCHEMA_VERSION],
        },
        "SELECT value FROM troupe_meta WHERE key = 'store_schema_version'",
      ], "write"));
    const version = Number(rs[rs.length - 1]!.rows[0]?.value ?? 0);
    if (version > STORE_SCHEMA_VERSION) {
      throw new UnavailableError(
        `The record store tables in ${this.#db.url} have schema version ${version}, newer than this code supports (${STORE_SCHEMA_VERSION})`,
      );
    }
  }

  get(store: string, key: string, now: number): Promise<StoredRecord | undefined> {
    return this.#run(`get "${key}" from store "${store}"`, async (c) => {
      const rs = await c.execute({
        sql: `SELECT key, value, revision, expires_at FROM store_records
              WHERE store = ? AND key = ? AND ${LIVE}`,
        args: [store, key, now],
      });
      const row = rs.rows[0];
      return row ? toRecord(row) : undefined;
    });
  }

  set(
    store: string,
    key: string,
    value: Uint8Array,
    options: { readonly expiresAt?: number; readonly ifRevision?: number },
    now: number,
  ): Promise<number> {
    const { ifRevision } = options;
    return this.#run(`set "${key}" in store "${store}"`, async (c) => {
      const cond = check(store, key, ifRevision, now);
      const stmts: InStatement[] = [{
        sql: `INSERT INTO store_records (store, key, value, revision, expires_at)
              SELECT ?, ?, ?, coalesce((SELECT revision FROM store_floors WHERE store = ?), 0) + 1,
                ? WHERE ${cond.sql}
              ON CONFLICT (store, key) DO UPDATE SET value = excluded.value,
                revision = store_records.revision + 1, expires_at = excluded.expires_at
              RETURNING revision`,
        args: [store, key, value, store, options.expiresAt ?? null, ...cond.args],
      }];
      const written = (await c.batch(stmts, "write"))[0]!.rows[0];
      if (written) return Number(written.revision);
      // Read after the transaction, for the message only: another writer may have moved on.
      const found = (await c.execute(current(store, key, now))).rows[0]?.revision;
      throw storeConflict("set", store, key, ifRevision!, Number(found ?? 0));
    });
  }

  delete(
    store: string,
    key: string,
    options: { readonly ifRevision?: number },
    now: number,
  ): Promise<boolean> {
    const { ifRevision } = options;
    return this.#run(`delete "${key}" from store "${store}"`, async (c) => {
      if (ifRevision === 0) {
        const rs = await c.execute(current(store, key, now));
        const found = Number(rs.rows[0]?.revision ?? 0);
        if (found !== 0) throw storeConflict("delete", store, key, 0, found);
        return false;
      }
      // Without ifRevision an expired record is deleted too; the floor keeps its revision.
      const where = ifRevision === undefined
        ? { sql: "store = ? AND key = ?", args: [store, key] }
        : {
          sql: `store = ? AND key = ? AND revision = ? AND ${LIVE}`,
          args: [store, key, ifRevision, now],
        };
      const rs = await c.batch([
        {
          sql: `INSERT INTO store_floors (store, revision)
                SELECT store, revision FROM store_records WHERE ${where.sql}
                ON CONFLICT (store) DO UPDATE SET revision = max(revision, excluded.revision)`,
          args: where.args,
        },
        {
          sql: `DELETE FROM store_records WHERE ${where.sql} RETURNING expires_at`,
          args: where.args,
        },
      ], "write");
      const row = rs[1]!.rows[0];
      if (ifRevision === undefined) {
        return row !== undefined && (row.expires_at === null || Number(row.expires_at) > now);
      }
      if (row) return true;
      const found = (await c.execute(current(store, key, now))).rows[0]?.revision;
      throw storeConflict("delete", store, key, ifRevision, Number(found ?? 0));
    });
  }

  list(
    store: string,
    options: { readonly prefix: string; readonly after?: string; readonly limit: number },
    now: number,
  ): Promise<StoredRecord[]> {
    const { prefix, after, limit } = options;
    return this.#run(`list store "${store}"`, async (c) => {
      // A literal prefix is the key range [prefix, prefixEnd(prefix)): no LIKE, no escaping.
      let sql = `SELECT key, value, revision, expires_at FROM store_records
                 WHERE store = ? AND key >= ?`;
      const args: InValue[] = [store, prefix];
      const end = prefixEnd(prefix);
      if (end !== undefined) {
        sql += " AND key < ?";
        args.push(end);
      }
      if (after !== undefined) {
        sql += " AND key > ?";
        args.push(after);
      }
      sql += ` AND ${LIVE} ORDER BY key LIMIT ?`;
      args.push(now, limit);
      const rs = await c.execute({ sql, args });
      return rs.rows.map(toRecord);
    });
  }

  purge(now: number, limit: number): Promise<number> {
    return this.#run("purge expired store records", async (c) => {
      // The same rows in both statements: a total order (the index's) and one transaction.
      const expired = `SELECT rowid FROM store_records WHERE expires_at <= ?
                       ORDER BY expires_at, rowid LIMIT ?`;
      const [, rs] = await c.batch([
        {
          sql: `INSERT INTO store_floors (store, revision)
                SELECT store, max(revision) FROM store_records WHERE rowid IN (${expired})
                GROUP BY store
                ON CONFLICT (store) DO UPDATE SET revision = max(revision, excluded.revision)`,
          args: [now, limit],
        },
        { sql: `DELETE FROM store_records WHERE rowid IN (${expired})`, args: [now, limit] },
      ], "write");
      return rs!.rowsAffected;
    });
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
