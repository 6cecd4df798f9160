/**
 * How many WAL bytes a commit writes per event, for three layouts of the events table, once
 * the log holds 10k, 100k and 1M events (1000 actors, each commit one event of each actor,
 * ~30-byte payloads, 4 KiB pages). Each layout also updates the actor's head row per append,
 * as the fence needs. Measured over 10 commits after a full checkpoint at that size (WAL
 * file size / events), with the time per commit (`synchronous=NORMAL`, in this thread).
 *
 * - `v2`: `events(actor TEXT, seq, …) PRIMARY KEY (actor, seq) WITHOUT ROWID`, schema 2;
 * - `rowid+index`: events in a rowid table (commit order) with a unique `(actor id, seq)`
 *   index;
 * - `v3`: schema 3 as the journal writes it (commit order, `prev` links, a mark every 32nd
 *   event), through the journal's own statements.
 *
 * Run: `deno run -A bench/journal_layout.ts [10000 100000 1000000]`.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { appendStatements, DDL, type SqlValue, type Stmt } from "../adapters/libsql/_sql.ts";

type Db = DatabaseSync;

const DATA = new Uint8Array(30).fill(7);
const ACTORS = 1000;

/** One layout: its tables, and the statements of one commit of one event per actor. */
interface Layout {
  readonly ddl: readonly string[];
  commit(db: Db, round: number): void;
}

/** `prepare` with each statement prepared once; `run(args)` binds an array. */
function cached(db: Db) {
  const cache = new Map<
    string,
    { stmt: StatementSync; reader: boolean; run(args: unknown[]): void }
  >();
  return (sql: string) => {
    let p = cache.get(sql);
    if (!p) {
      const stmt = db.prepare(sql);
      const reader = stmt.columns().length > 0;
      p = {
        stmt,
        reader,
        run: (args) =>
          void (reader ? stmt.all(...args as SqlValue[]) : stmt.run(...args as SqlValue[])),
      };
      cache.set(sql, p);
    }
    return p;
  };
}

function values(rows: number, cols: number): string {
  return Array.from({ length: rows }, () => `(${Array(cols).fill("?").join(",")})`).join(",");
}

const layouts: Record<string, () => Layout> = {
  v2: () => {
    let prep: ReturnType<typeof cached>;
    return {
      ddl: [
        `CREATE TABLE events (actor TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
          version INTEGER NOT NULL, data BLOB NOT NULL, at INTEGER NOT NULL,
          PRIMARY KEY (actor, seq)) WITHOUT ROWID`,
        `CREATE TABLE activations (actor TEXT PRIMARY KEY, epoch INTEGER NOT NULL,
          seq INTEGER NOT NULL, owner TEXT) WITHOUT ROWID`,
      ],
      commit(db, round) {
        prep ??= cached(db);
        if (round === 0) {
          const ins = prep(`INSERT INTO activations VALUES (?, 1, 0, NULL)`);
          for (let a = 0; a < ACTORS; a++) ins.run([`ledger/l${a}`]);
        }
        const insert = prep(`INSERT INTO events VALUES ${values(100, 6)}`);
        const head = prep(
          "UPDATE activations SET seq = ? WHERE actor = ? AND epoch = 1 AND seq = ?",
        );
        for (let a0 = 0; a0 < ACTORS; a0 += 100) {
          const args: unknown[] = [];
          for (let a = a0; a < a0 + 100; a++) {
            args.push(`ledger/l${a}`, round + 1, "added", 1, DATA, 1);
          }
          insert.run(args);
        }
        for (let a = 0; a < ACTORS; a++) head.run([round + 1, `ledger/l${a}`, round]);
      },
    };
  },
  "rowid+index": () => {
    let prep: ReturnType<typeof cached>;
    return {
      ddl: [
        `CREATE TABLE events (pos INTEGER PRIMARY KEY, actor INTEGER NOT NULL,
          seq INTEGER NOT NULL, type TEXT NOT NULL, version INTEGER NOT NULL,
          data BLOB NOT NULL, at INTEGER NOT NULL)`,
        "CREATE UNIQUE INDEX events_actor ON events (actor, seq)",
        `CREATE TABLE activations (id INTEGER PRIMARY KEY, actor TEXT NOT NULL UNIQUE,
          epoch INTEGER NOT NULL, seq INTEGER NOT NULL)`,
      ],
      commit(db, round) {
        prep ??= cached(db);
        if (round === 0) {
          const ins = prep(`INSERT INTO activations VALUES (?, ?, 1, 0)`);
          for (let a = 0; a < ACTORS; a++) ins.run([a + 1, `ledger/l${a}`]);
        }
        const insert = prep(
          `INSERT INTO events (actor, seq, type, version, data, at) VALUES ${values(100, 6)}`,
        );
        const head = prep("UPDATE activations SET seq = ? WHERE id = ? AND epoch = 1 AND seq = ?");
        for (let a0 = 0; a0 < ACTORS; a0 += 100) {
          const args: unknown[] = [];
          for (let a = a0; a < a0 + 100; a++) args.push(a + 1, round + 1, "added", 1, DATA, 1);
          insert.run(args);
        }
        for (let a = 0; a < ACTORS; a++) head.run([round + 1, a + 1, round]);
      },
    };
  },
  v3: () => {
    let prep: ReturnType<typeof cached>;
    const run = (s: Stmt) => prep(s.sql).run([...s.args]);
    return {
      ddl: DDL,
      commit(db, round) {
        prep ??= cached(db);
        if (round === 0) {
          const ins = prep(`INSERT INTO activations (actor, epoch, seq) VALUES (?, 1, 0)`);
          for (let a = 0; a < ACTORS; a++) ins.run([`ledger/l${a}`]);
        }
        const groups = Array.from({ length: ACTORS }, (_, a) => ({
          actor: `ledger/l${a}`,
          epoch: 1,
          expectedSeq: round,
          events: [{ type: "added", version: 1, data: DATA, at: 1 }],
          idempotency: [],
          reminders: [],
          cancels: [],
          outbox: [],
        }));
        for (const s of appendStatements(groups, round + 1, 1).stmts) run(s);
      },
    };
  },
};

/** Result of {@link walBytesPerEvent}. */
export interface LayoutResult {
  readonly layout: string;
  /** Events in the log when measured. */
  readonly events: number;
  /** WAL bytes written per event by the next 10 commits. */
  readonly walBytesPerEvent: number;
  /** Time per commit of 1000 events, ms (this thread, `synchronous=NORMAL`). */
  readonly msPerCommit: number;
}

/**
 * Fills a log of `events` events with `layout`, then measures the WAL bytes per event of the
 * next 10 commits.
 *
 * @example
 * ```ts
 * import { walBytesPerEvent } from "./journal_layout.ts";
 * console.log(await walBytesPerEvent("v3", 10_000));
 * ```
 */
export async function walBytesPerEvent(layout: string, events: number): Promise<LayoutResult> {
  const l = layouts[layout]!();
  const dir = await Deno.makeTempDir({ prefix: "troupe-layout-" });
  const path = `${dir}/l.db`;
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    for (const sql of l.ddl) db.exec(sql);
    const commit = (round: number) => {
      db.exec("BEGIN IMMEDIATE");
      l.commit(db, round);
      db.exec("COMMIT");
    };
    const rounds = Math.ceil(events / ACTORS);
    for (let r = 0; r < rounds; r++) commit(r);
    db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").all();
    db.exec("PRAGMA wal_autocheckpoint = 0");
    const t0 = performance.now();
    for (let r = rounds; r < rounds + 10; r++) commit(r);
    const ms = (performance.now() - t0) / 10;
    const wal = (await Deno.stat(`${path}-wal`)).size;
    return {
      layout,
      events: rounds * ACTORS,
      walBytesPerEvent: Math.round(wal / (10 * ACTORS)),
      msPerCommit: Math.round(ms * 100) / 100,
    };
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const sizes = Deno.args.length > 0 ? Deno.args.map(Number) : [10_000, 100_000, 1_000_000];
  const rows = [];
  for (const events of sizes) {
    for (const layout of Object.keys(layouts)) rows.push(await walBytesPerEvent(layout, events));
  }
  console.table(rows);
}
