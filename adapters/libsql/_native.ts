/**
 * The {@link Executor} of a local database file on libSQL's synchronous driver, used inside a
 * worker thread: every statement is prepared once and kept.
 *
 * @module
 */

import Database from "libsql";
import type { Executor, Rows } from "./_engine.ts";
import type { SqlValue, Stmt } from "./_sql.ts";

/** A prepared statement of the synchronous driver (the part used here). */
interface Prepared {
  readonly reader: boolean;
  raw(on?: boolean): Prepared;
  all(args: readonly SqlValue[]): unknown[][];
  run(args: readonly SqlValue[]): { changes: number };
}

/** The synchronous driver's connection (the part used here). */
interface NativeDb {
  prepare(sql: string): Prepared;
  exec(sql: string): void;
  close(): void;
  readonly inTransaction: boolean;
}

/** Options of {@link nativeExecutor}. */
export interface NativeOptions {
  /** The database file's path, or `":memory:"`. */
  readonly path: string;
  /** SQLite's busy timeout: how long one try waits for a lock, blocking this thread. */
  readonly busySliceMs: number;
  /** `synchronous` in WAL mode. */
  readonly synchronous: "full" | "normal";
  /**
   * Whether this connection leaves checkpoints to another (`wal_autocheckpoint = 0`): the
   * writer's commits then never run one.
   */
  readonly checkpointElsewhere: boolean;
}

/**
 * A local database on the synchronous driver: statements are prepared once and kept (the
 * journal uses a few fixed shapes), so no commit pays for preparing its statements again.
 */
export function nativeExecutor(options: NativeOptions): Executor {
  const db = new (Database as unknown as new (path: string, opts: object) => NativeDb)(
    options.path,
    { timeout: options.busySliceMs },
  );
  const cache = new Map<string, Prepared>();
  const prepare = (sql: string): Prepared => {
    let p = cache.get(sql);
    if (!p) {
      p = db.prepare(sql);
      if (p.reader) p.raw(true);
      if (cache.size > 500) cache.clear();
      cache.set(sql, p);
    }
    return p;
  };
  const run = (s: Stmt): Rows => {
    const p = prepare(s.sql);
    if (p.reader) return p.all(s.args);
    p.run(s.args);
    return [];
  };
  const memory = options.path === ":memory:";
  if (!memory) {
    const mode = String(prepare("PRAGMA journal_mode = WAL").all([])[0]?.[0] ?? "");
    if (mode.toLowerCase() !== "wal") {
      throw Object.assign(new Error(`the database cannot use WAL mode (mode is "${mode}")`), {
        code: "SQLITE_CANTOPEN_WAL",
      });
    }
    db.exec(`PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"}`);
    if (options.checkpointElsewhere) db.exec("PRAGMA wal_autocheckpoint = 0");
    // After a checkpoint resets it, keep the WAL file at most 64 MiB.
    db.exec("PRAGMA journal_size_limit = 67108864");
  }
  const rollback = () => {
    try {
      if (db.inTransaction) db.exec("ROLLBACK");
    } catch {
      // the transaction is gone already
    }
  };
  return {
    write(stmts) {
      try {
        db.exec("BEGIN IMMEDIATE");
        const out: Rows[] = [];
        for (const s of stmts) out.push(run(s));
        db.exec("COMMIT");
        return Promise.resolve(out);
      } catch (err) {
        rollback();
        return Promise.reject(err);
      }
    },
    read(stmts) {
      try {
        if (stmts.length === 1) return Promise.resolve([run(stmts[0]!)]);
        db.exec("BEGIN");
        const out: Rows[] = [];
        for (const s of stmts) out.push(run(s));
        db.exec("COMMIT");
        return Promise.resolve(out);
      } catch (err) {
        rollback();
        return Promise.reject(err);
      }
    },
    async transaction(fn) {
      db.exec("BEGIN IMMEDIATE");
      try {
        const result = await fn((s) => Promise.resolve(run(s)));
        db.exec("COMMIT");
        return result;
      } catch (err) {
        rollback();
        throw err;
      }
    },
    close() {
      cache.clear();
      db.close();
    },
  };
}

/** Runs a passive checkpoint on its own connection; returns the WAL's frames and those copied. */
export function checkpointer(path: string): { run(): [number, number]; close(): void } {
  const db = new (Database as unknown as new (path: string, opts: object) => NativeDb)(path, {
    timeout: 0,
  });
  const stmt = db.prepare("PRAGMA wal_checkpoint(PASSIVE)").raw(true);
  return {
    run() {
      const row = stmt.all([])[0] ?? [];
      return [Number(row[1] ?? 0), Number(row[2] ?? 0)];
    },
    close() {
      db.close();
    },
  };
}

/** A read-only connection for lookups by key on the calling thread. */
export interface PointReader {
  /** Runs one read; throws the driver's error (a busy database included: no wait). */
  read(stmt: Stmt): Rows;
  close(): void;
}

/**
 * Opens a connection that only reads, without waiting for locks (`timeout: 0`): in WAL mode a
 * reader never waits for a writer, so a lookup by key takes microseconds on whatever thread
 * calls it.
 */
export function pointReader(path: string): PointReader {
  const db = new (Database as unknown as new (path: string, opts: object) => NativeDb)(path, {
    timeout: 0,
  });
  const cache = new Map<string, Prepared>();
  return {
    read(s) {
      let p = cache.get(s.sql);
      if (!p) {
        p = db.prepare(s.sql).raw(true);
        if (cache.size > 100) cache.clear();
        cache.set(s.sql, p);
      }
      return p.all(s.args);
    },
    close() {
      cache.clear();
      db.close();
    },
  };
}
