/**
 * Local database files on the runtime's own SQLite (`node:sqlite`, synchronous): the
 * {@link Executor} of a shard's worker thread, the connection of its checkpoint thread, and
 * the read-only connection for lookups by key on the calling thread. Every statement is
 * prepared once and kept.
 *
 * Why not libSQL's own driver here: measured on the same machine, `node:sqlite` commits a
 * 1000-row batch in half the time and runs a lookup by key 5–20× faster (the `libsql` binding
 * pays tens of microseconds per statement). The files are the same SQLite format, shared with
 * any libSQL or SQLite process; remote servers use `@libsql/client` (`_client.ts`).
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Executor, Rows } from "./_engine.ts";
import type { SqlValue, Stmt } from "./_sql.ts";

/**
 * SQLite's result code for an error of `node:sqlite`, which gives only its message here:
 * `SQLITE_BUSY`, `SQLITE_LOCKED`, `SQLITE_PROTOCOL`, `SQLITE_CONSTRAINT`, `SQLITE_READONLY`, `SQLITE_CANTOPEN`,
 * `SQLITE_PERM`, or undefined.
 */
export function sqliteCode(message: string): string | undefined {
  if (/database is locked|database is busy/i.test(message)) return "SQLITE_BUSY";
  if (/(table|schema) is locked/i.test(message)) return "SQLITE_LOCKED";
  // WAL mode: a connection that lost the race to start a transaction many times over.
  if (/locking protocol/i.test(message)) return "SQLITE_PROTOCOL";
  if (/constraint failed/i.test(message)) return "SQLITE_CONSTRAINT";
  if (/readonly database|read-only/i.test(message)) return "SQLITE_READONLY";
  if (/unable to open database/i.test(message)) return "SQLITE_CANTOPEN";
  if (/access permission denied/i.test(message)) return "SQLITE_PERM";
  return undefined;
}

/** The same error with SQLite's code (see {@link sqliteCode}). */
function coded(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const code = sqliteCode(err.message);
  return code ? Object.assign(err, { code }) : err;
}

/** A connection with its statements prepared once. */
class Connection {
  readonly db: DatabaseSync;
  readonly #cache = new Map<string, { stmt: StatementSync; reader: boolean }>();

  constructor(path: string, busyMs: number) {
    try {
      this.db = new DatabaseSync(path);
      this.db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyMs))}`);
    } catch (err) {
      throw coded(err);
    }
  }

  run(s: Stmt): Rows {
    let p = this.#cache.get(s.sql);
    if (!p) {
      const stmt = this.db.prepare(s.sql);
      // Typed through a cast: Deno's own node:sqlite types (what a user project of this
      // package is checked with) lack setReturnArrays, which the runtime has.
      (stmt as StatementSync & { setReturnArrays(on: boolean): void }).setReturnArrays(true);
      p = { stmt, reader: stmt.columns().length > 0 };
      if (this.#cache.size > 500) this.#cache.clear();
      this.#cache.set(s.sql, p);
    }
    const args = s.args as SqlValue[];
    if (p.reader) return p.stmt.all(...args) as unknown as Rows;
    p.stmt.run(...args);
    return [];
  }

  exec(sql: string): void {
    this.db.exec(sql);
  }

  /**
   * Whether a transaction is open on this connection (SQLite's autocommit flag). A runtime
   * whose `node:sqlite` does not tell says yes.
   */
  get inTransaction(): boolean {
    return (this.db as { readonly isTransaction?: boolean }).isTransaction ?? true;
  }

  rollback(): void {
    try {
      this.db.exec("ROLLBACK");
    } catch {
      // no transaction was open
    }
  }

  close(): void {
    this.#cache.clear();
    this.db.close();
  }
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

/** The executor of a shard's worker thread: one connection, statements prepared once. */
export function nativeExecutor(options: NativeOptions): Executor {
  const c = new Connection(options.path, options.busySliceMs);
  try {
    if (options.path !== ":memory:") {
      const mode = String(c.run({ sql: "PRAGMA journal_mode = WAL", args: [] })[0]?.[0] ?? "");
      if (mode.toLowerCase() !== "wal") {
        throw Object.assign(new Error(`the database cannot use WAL mode (mode is "${mode}")`), {
          code: "SQLITE_CANTOPEN",
        });
      }
      c.exec(`PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"}`);
      if (options.checkpointElsewhere) c.exec("PRAGMA wal_autocheckpoint = 0");
      // After a checkpoint resets it, keep the WAL file at most 64 MiB.
      c.exec("PRAGMA journal_size_limit = 67108864");
    }
  } catch (err) {
    c.close();
    throw coded(err);
  }
  /**
   * Set while a write transaction is open. The connection is then the transaction's alone:
   * the database thread takes messages between the steps of a transaction (each `await` of
   * it), and a read that began, failed or rolled back there would end the transaction
   * (SQLite has one per connection), leaving the rest of its statements to run outside any
   * transaction, each committed on its own. Reads and writes wait until it ends.
   */
  let open: PromiseWithResolvers<void> | undefined;
  let closed = false;
  /** Runs `fn` (synchronous, on the connection) once no transaction is open. */
  const whenIdle = async <T>(fn: () => T): Promise<T> => {
    while (open) await open.promise;
    if (closed) throw closedError();
    try {
      return fn();
    } catch (err) {
      throw coded(err);
    }
  };
  /** Runs `stmts` in one transaction begun with `begin`, all at once (nothing awaited). */
  const atOnce = (begin: string, stmts: readonly Stmt[]): Rows[] => {
    c.exec(begin);
    try {
      const out: Rows[] = [];
      for (const s of stmts) out.push(c.run(s));
      c.exec("COMMIT");
      return out;
    } catch (err) {
      c.rollback();
      throw err;
    }
  };
  return {
    interactive: true,
    write(stmts) {
      return whenIdle(() => stmts.length === 0 ? [] : atOnce("BEGIN IMMEDIATE", stmts));
    },
    read(stmts) {
      return whenIdle(() =>
        stmts.length === 0 ? [] : stmts.length === 1 ? [c.run(stmts[0]!)] : atOnce("BEGIN", stmts)
      );
    },
    async transaction(fn) {
      while (open) await open.promise;
      if (closed) throw closedError();
      const done = open = Promise.withResolvers<void>();
      try {
        try {
          c.exec("BEGIN IMMEDIATE");
        } catch (err) {
          throw coded(err);
        }
        try {
          const result = await fn((s) => {
            // Never run a statement of the transaction outside it.
            if (!c.inTransaction) return Promise.reject(ended(s.sql));
            try {
              return Promise.resolve(c.run(s));
            } catch (err) {
              return Promise.reject(coded(err));
            }
          });
          if (!c.inTransaction) throw ended("COMMIT");
          c.exec("COMMIT");
          return result;
        } catch (err) {
          if (c.inTransaction) c.rollback();
          throw coded(err);
        }
      } finally {
        open = undefined;
        done.resolve();
      }
    },
    close() {
      closed = true;
      c.close();
    },
  };
}

function closedError(): Error {
  return Object.assign(new Error("the journal database is closed"), { code: "CLOSED" });
}

/**
 * The error of a statement of a write transaction that found the transaction already ended
 * (rolled back): it is not run, so nothing of the transaction is written.
 */
function ended(sql: string): Error {
  return Object.assign(
    new Error(
      `the write transaction ended before it was done (rolled back, nothing of it written); not run: ${
        sql.replace(/\s+/g, " ").slice(0, 80)
      }`,
    ),
    { code: "TRANSACTION_ENDED" },
  );
}

/** Runs a passive checkpoint on its own connection; returns the WAL's frames and those copied. */
export function checkpointer(path: string): { run(): [number, number]; close(): void } {
  const c = new Connection(path, 0);
  return {
    run() {
      const row = c.run({ sql: "PRAGMA wal_checkpoint(PASSIVE)", args: [] })[0] ?? [];
      return [Number(row[1] ?? 0), Number(row[2] ?? 0)];
    },
    close() {
      c.close();
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
 * Opens a connection that only reads, without waiting for locks: in WAL mode a reader never
 * waits for a writer, so a lookup by key takes microseconds on whatever thread calls it.
 */
export function pointReader(path: string): PointReader {
  const c = new Connection(path, 0);
  c.exec("PRAGMA query_only = 1");
  return {
    read(s) {
      try {
        return c.run(s);
      } catch (err) {
        throw coded(err);
      }
    },
    close() {
      c.close();
    },
  };
}
