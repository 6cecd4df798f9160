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

/**
 * What is wrong with the logs of a journal's database: every head's chain of `prev` links must
 * run through its own actor's events only, seq by seq down to 1, and every event must be in
 * exactly one log (as many events as the heads' seqs add up to). Empty when all is well.
 *
 * @example
 * ```ts
 * logViolations("file:/tmp/j.db"); // [] or ["t/b: at position 7 seq 1 expected, found actor id 1 seq 1", …]
 * ```
 */
export function logViolations(url: string): string[] {
  const db = sqlite(url);
  try {
    db.execute("BEGIN"); // one snapshot, while other processes may still write
    // The heads: each row, brought up from the events where heads lag (troupe_meta's
    // heads_from: a writer deferred them, see adapters/libsql/_sql.ts).
    const heads = `heads AS (
        SELECT a.id, a.actor,
          CASE WHEN l.seq > a.seq THEN l.pos ELSE a.pos END AS pos,
          CASE WHEN l.seq > a.seq THEN l.seq ELSE a.seq END AS seq
        FROM activations AS a LEFT JOIN (
          SELECT actor, max(seq) AS seq, max(pos) AS pos FROM events
          WHERE pos >= (SELECT value FROM troupe_meta WHERE key = 'heads_from') GROUP BY actor
        ) AS l ON l.actor = a.id)`;
    const out = db.execute(`
      WITH RECURSIVE ${heads}, chain(id, actor, pos, n) AS (
        SELECT id, actor, pos, seq FROM heads WHERE pos IS NOT NULL
        UNION ALL
        SELECT c.id, c.actor, e.prev, c.n - 1 FROM chain AS c JOIN events AS e ON e.pos = c.pos
        WHERE e.prev IS NOT NULL AND c.n > 1
      )
      SELECT c.actor AS head, c.pos AS at_pos, c.n AS wanted, e.actor AS found_id,
        e.seq AS found_seq FROM chain AS c
      LEFT JOIN events AS e ON e.pos = c.pos
      WHERE e.pos IS NULL OR e.actor != c.id OR e.seq != c.n
        OR (e.prev IS NULL AND e.seq != 1) OR (c.n = 1 AND e.prev IS NOT NULL)`).rows.map((r) =>
      `${r[0]}: at position ${r[1]} seq ${r[2]} expected, found actor id ${r[3]} seq ${r[4]}`
    );
    for (
      const r of db.execute(`WITH ${heads} SELECT actor FROM heads WHERE seq > 0 AND pos IS NULL`)
        .rows
    ) {
      out.push(`${r[0]}: a head without a position`);
    }
    const [[events, seqs]] = db.execute(
      `WITH ${heads} SELECT (SELECT count(*) FROM events), (SELECT coalesce(sum(seq), 0) FROM heads)`,
    ).rows as unknown as [[number, number]];
    if (Number(events) !== Number(seqs)) {
      out.push(`${events} events, but the heads' seqs add up to ${seqs}`);
    }
    db.execute("COMMIT");
    return out;
  } finally {
    db.close();
  }
}
