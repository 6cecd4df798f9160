/**
 * The libSQL {@link StoreBackend}: record stores in the journal's database (tables
 * `store_records` and `store_floors`), on the journal's connection and with its handling
 * of a busy database.
 *
 * @module
 */

import { ClosedError, UnavailableError } from "../../mod.ts";
import { prefixEnd, type StoreBackend, storeConflict, type StoredRecord } from "../../spi.ts";
import { bytes, type Rows } from "./_engine.ts";
import type { Shard } from "./_shard.ts";
import type { SqlValue, Stmt } from "./_sql.ts";

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
 * A {@link StoreBackend} on a journal shard's database (the journal's first shard, from
 * `libsqlJournal().openStore()`). Closing it leaves the journal open.
 *
 * Records live in `store_records(store, key, value, revision, expires_at)`. A write of an
 * existing key takes its revision + 1; a new key takes its store's floor + 1, where
 * `store_floors` holds, per store, the highest revision ever deleted or purged there; so a
 * key's revision only grows, also across a delete, and a plain write touches one table.
 * Writes are group-committed with the journal's other writes: the writes that arrive while a
 * batch commits share the next `BEGIN IMMEDIATE` transaction, each with its revision check in
 * SQL, so of concurrent compare-and-set writers, from any process sharing the database,
 * exactly one wins, and each write succeeds or fails on its own.
 */
export function storeOnShard(shard: Shard, url: string): StoreBackend {
  return new LibsqlStore(shard, url);
}

/** The revision check of a write as SQL on `store_records`, with its arguments. */
function check(store: string, key: string, ifRevision: number | undefined, now: number) {
  if (ifRevision === undefined) return { sql: "1", args: [] as SqlValue[] };
  if (ifRevision === 0) {
    return {
      sql: `NOT EXISTS (SELECT 1 FROM store_records WHERE store = ? AND key = ? AND ${LIVE})`,
      args: [store, key, now] as SqlValue[],
    };
  }
  return {
    sql: `EXISTS (SELECT 1 FROM store_records WHERE store = ? AND key = ? AND revision = ?
          AND ${LIVE})`,
    args: [store, key, ifRevision, now] as SqlValue[],
  };
}

/** Reads the live revision (0 when none), for the message of a conflict. */
function current(store: string, key: string, now: number): Stmt {
  return {
    sql: `SELECT revision FROM store_records WHERE store = ? AND key = ? AND ${LIVE}`,
    args: [store, key, now],
  };
}

/** A row `key, value, revision, expires_at` as a record. */
function toRecord(r: unknown[]): StoredRecord {
  const expiresAt = r[3];
  return {
    key: String(r[0]),
    value: bytes(r[1]),
    revision: Number(r[2]),
    ...(expiresAt === null || expiresAt === undefined ? {} : { expiresAt: Number(expiresAt) }),
  };
}

/** The first column of the first row of a statement's rows (0 when none). */
function first(rows: Rows | undefined): number {
  return Number(rows?.[0]?.[0] ?? 0);
}

class LibsqlStore implements StoreBackend {
  readonly #shard: Shard;
  readonly #url: string;
  #schema: Promise<void> | undefined;
  #schemaReady = false;
  #closed = false;

  constructor(shard: Shard, url: string) {
    this.#shard = shard;
    this.#url = url;
  }

  /** Checks that the store is open and its tables exist (created by the first process to use them). */
  async #ready(what: string): Promise<void> {
    if (this.#closed || this.#shard.closed) {
      throw new ClosedError(`Cannot ${what}: the record store on ${this.#url} is closed`);
    }
    if (this.#schemaReady) return;
    this.#schema ??= this.#createTables().then(
      () => void (this.#schemaReady = true),
      (err) => {
        this.#schema = undefined; // the next call tries again
        throw err;
      },
    );
    await this.#schema;
  }

  async #createTables(): Promise<void> {
    const rs = await this.#shard.custom("create the record store tables", [
      ...DDL.map((sql) => ({ sql, args: [] })),
      {
        sql: `INSERT INTO troupe_meta (key, value) VALUES ('store_schema_version', ?)
              ON CONFLICT (key) DO NOTHING`,
        args: [STORE_SCHEMA_VERSION],
      },
      { sql: "SELECT value FROM troupe_meta WHERE key = 'store_schema_version'", args: [] },
    ]);
    const version = first(rs[rs.length - 1]);
    if (version > STORE_SCHEMA_VERSION) {
      throw new UnavailableError(
        `The record store tables in ${this.#url} have schema version ${version}, newer than this code supports (${STORE_SCHEMA_VERSION})`,
      );
    }
  }

  async get(store: string, key: string, now: number): Promise<StoredRecord | undefined> {
    const what = `get "${key}" from store "${store}"`;
    await this.#ready(what);
    const rows = await this.#shard.readPoint(what, {
      sql: `SELECT key, value, revision, expires_at FROM store_records
            WHERE store = ? AND key = ? AND ${LIVE}`,
      args: [store, key, now],
    });
    const row = rows[0];
    return row ? toRecord(row) : undefined;
  }

  async set(
    store: string,
    key: string,
    value: Uint8Array,
    options: { readonly expiresAt?: number; readonly ifRevision?: number },
    now: number,
  ): Promise<number> {
    const { ifRevision } = options;
    const what = `set "${key}" in store "${store}"`;
    await this.#ready(what);
    const cond = check(store, key, ifRevision, now);
    const [written, found] = await this.#shard.custom(what, [
      {
        sql: `INSERT INTO store_records (store, key, value, revision, expires_at)
              SELECT ?, ?, ?, coalesce((SELECT revision FROM store_floors WHERE store = ?), 0) + 1,
                ? WHERE ${cond.sql}
              ON CONFLICT (store, key) DO UPDATE SET value = excluded.value,
                revision = store_records.revision + 1, expires_at = excluded.expires_at
              RETURNING revision`,
        args: [store, key, value, store, options.expiresAt ?? null, ...cond.args],
      },
      current(store, key, now), // in the same transaction: the revision that refused it
    ]);
    if (written!.length > 0) return first(written);
    throw storeConflict("set", store, key, ifRevision!, first(found));
  }

  async delete(
    store: string,
    key: string,
    options: { readonly ifRevision?: number },
    now: number,
  ): Promise<boolean> {
    const { ifRevision } = options;
    const what = `delete "${key}" from store "${store}"`;
    await this.#ready(what);
    if (ifRevision === 0) {
      const found = first(await this.#shard.readPoint(what, current(store, key, now)));
      if (found !== 0) throw storeConflict("delete", store, key, 0, found);
      return false;
    }
    // Without ifRevision an expired record is deleted too; the floor keeps its revision.
    const where = ifRevision === undefined
      ? { sql: "store = ? AND key = ?", args: [store, key] as SqlValue[] }
      : {
        sql: `store = ? AND key = ? AND revision = ? AND ${LIVE}`,
        args: [store, key, ifRevision, now] as SqlValue[],
      };
    const [, deleted, found] = await this.#shard.custom(what, [
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
      current(store, key, now),
    ]);
    const row = deleted![0];
    if (ifRevision === undefined) {
      return row !== undefined && (row[0] === null || Number(row[0]) > now);
    }
    if (row) return true;
    throw storeConflict("delete", store, key, ifRevision, first(found));
  }

  async list(
    store: string,
    options: { readonly prefix: string; readonly after?: string; readonly limit: number },
    now: number,
  ): Promise<StoredRecord[]> {
    const { prefix, after, limit } = options;
    const what = `list store "${store}"`;
    await this.#ready(what);
    // A literal prefix is the key range [prefix, prefixEnd(prefix)): no LIKE, no escaping.
    let sql = `SELECT key, value, revision, expires_at FROM store_records
               WHERE store = ? AND key >= ?`;
    const args: SqlValue[] = [store, prefix];
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
    const [rows] = await this.#shard.read(what, [{ sql, args }]);
    return rows!.map(toRecord);
  }

  async purge(now: number, limit: number): Promise<number> {
    const what = "purge expired store records";
    await this.#ready(what);
    // The same rows in both statements: a total order (the index's) and one transaction.
    const expired = `SELECT rowid FROM store_records WHERE expires_at <= ?
                     ORDER BY expires_at, rowid LIMIT ?`;
    const [, deleted] = await this.#shard.custom(what, [
      {
        sql: `INSERT INTO store_floors (store, revision)
              SELECT store, max(revision) FROM store_records WHERE rowid IN (${expired})
              GROUP BY store
              ON CONFLICT (store) DO UPDATE SET revision = max(revision, excluded.revision)`,
        args: [now, limit],
      },
      {
        sql: `DELETE FROM store_records WHERE rowid IN (${expired}) RETURNING 1`,
        args: [now, limit],
      },
    ]);
    return deleted!.length;
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
