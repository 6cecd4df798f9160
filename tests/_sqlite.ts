/**
 * For tests that look into (or tamper with) a journal's database file while a journal in the
 * same process has it open: a connection on the same SQLite library the journal uses
 * (`node:sqlite`). Two SQLite libraries in one process do not see each other's locks (POSIX
 * locks belong to the process), so `@libsql/client` must not be used on such a file here.
 *
 * The small part of `@libsql/client`'s API the tests use, synchronous: rows have their columns
 * by name and by index.
 */
import { DatabaseSync, type SQLInputValue } from "node:sqlite";

type Row = unknown[] & Record<string, unknown>;
type Stmt = string | { sql: string; args?: unknown[] };

/** Opens `file:<path>` (or a path) with a busy timeout of 5 s. */
export function sqlite(url: string) {
  const db = new DatabaseSync(url.replace(/^file:/, "").replace(/\?.*$/, ""));
  db.exec("PRAGMA busy_timeout = 5000");
  const execute = (s: Stmt): { rows: Row[] } => {
    const { sql, args = [] } = typeof s === "string" ? { sql: s } : s;
    const stmt = db.prepare(sql);
    if (stmt.columns().length === 0) {
      stmt.run(...(args as SQLInputValue[]));
      return { rows: [] };
    }
    const rows = stmt.all(...(args as SQLInputValue[])).map((r) =>
      Object.assign(Object.values(r), r) as Row
    );
    return { rows };
  };
  return {
    execute,
    /** Runs statements in one write transaction. */
    batch(stmts: Stmt[]): void {
      db.exec("BEGIN IMMEDIATE");
      try {
        for (const s of stmts) execute(s);
        db.exec("COMMIT");
      } catch (err) {
        db.exec("ROLLBACK");
        throw err;
      }
    },
    /** Takes the write lock (BEGIN IMMEDIATE) until `rollback()`. */
    transaction() {
      db.exec("BEGIN IMMEDIATE");
      return { execute, rollback: () => db.exec("ROLLBACK") };
    },
    close: () => db.close(),
  };
}
