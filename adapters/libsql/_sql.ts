/**
 * The journal's SQL: schema, migrations and the statements of each operation, shared by both
 * executors (a local file in a worker thread, a remote server through `@libsql/client`).
 *
 * Layout (schema version 3), chosen by measured WAL bytes per event (bench/README.md):
 * - `events(pos INTEGER PRIMARY KEY, actor, seq, prev, type, version, data, at)`: every event
 *   in commit order (`pos` is the shard's commit-order position), each pointing at the
 *   position of its actor's previous event (`prev`). A commit appends at the end of one
 *   B-tree, whatever the number of actors it touches.
 * - `activations(id INTEGER PRIMARY KEY, actor UNIQUE, epoch, seq, pos, prev_pos, owner,
 *   batch)`: per actor its epoch, owner and head (last seq and its position). The head update
 *   is the fence: it applies only where epoch and expected seq match.
 * - `event_marks(actor, seq, pos)`: every {@link MARK_EVERY}th event of each actor, so a read
 *   from any seq walks at most that many `prev` links beyond what it returns.
 * - Deferred heads (schema version 5): a local writer that is the file's only writer keeps
 *   the heads it writes in memory and writes them to `activations` now and then, not at every
 *   commit (a head update touches one B-tree page per actor: ~4 KiB of WAL per event with a
 *   million actors). While some are behind, `troupe_meta` holds `heads_from`
 *   ({@link HEADS_FROM}): every event before that position is in its actor's head row. Whoever
 *   reads heads brings them up from the events first ({@link CATCH_UP}), and reads look at the
 *   events from there ({@link readStatement}).
 *
 * Each batch of writes uses multi-row `VALUES` lists in a few fixed sizes
 * ({@link VALUES_SIZES}), so a local executor prepares each statement once.
 *
 * @module
 */

import type { IdempotencyRecord, NewEvent, OutboxMessage, Reminder, Snapshot } from "../../spi.ts";

/** A value bound to a statement. */
export type SqlValue = string | number | bigint | Uint8Array | null;

/** One statement with its arguments. */
export interface Stmt {
  readonly sql: string;
  readonly args: readonly SqlValue[];
}

/** The schema version this code writes (`troupe_meta.schema_version`). */
export const SCHEMA_VERSION = 5;

/**
 * The `troupe_meta` key of the position from which heads may lag behind the events (absent:
 * every head row is current). Version 5: code of version 4 does not know it, so it refuses
 * the file.
 */
export const HEADS_FROM = "heads_from";

/** The position of {@link HEADS_FROM} (NULL when absent), as a subquery. */
const HEADS_FROM_POS = `(SELECT value FROM troupe_meta WHERE key = '${HEADS_FROM}')`;

/** Every head row is current: removes {@link HEADS_FROM}. */
export const HEADS_CURRENT: Stmt = {
  sql: `DELETE FROM troupe_meta WHERE key = '${HEADS_FROM}'`,
  args: [],
};

/**
 * Brings every head row up to the events from {@link HEADS_FROM} on (nothing to do when it
 * is absent) and removes the mark: run in a write transaction before heads are read or
 * fenced by a writer that did not defer them itself (another process, a restart after a
 * crash, or a writer whose cache is gone).
 */
export const CATCH_UP: readonly Stmt[] = [
  {
    sql: `UPDATE activations SET seq = h.seq, pos = h.pos
          FROM (SELECT actor, max(seq) AS seq, max(pos) AS pos FROM events
                WHERE pos >= ${HEADS_FROM_POS} GROUP BY actor) AS h
          WHERE activations.id = h.actor AND h.seq > activations.seq`,
    args: [],
  },
  HEADS_CURRENT,
];

/** Every this many events of an actor, one row in `event_marks`. */
export const MARK_EVERY = 32;

/** Rows per multi-row `VALUES` list, largest first: a batch is split greedily into these. */
export const VALUES_SIZES: readonly number[] = [256, 64, 16, 4, 1];

/** The tables and indexes of schema version 3 (idempotent). */
export const DDL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS troupe_meta (key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS activations (id INTEGER PRIMARY KEY, actor TEXT NOT NULL UNIQUE,
    epoch INTEGER NOT NULL, seq INTEGER NOT NULL, pos INTEGER, prev_pos INTEGER, owner TEXT,
    batch INTEGER)`,
  `CREATE TABLE IF NOT EXISTS events (pos INTEGER PRIMARY KEY, actor INTEGER NOT NULL,
    seq INTEGER NOT NULL, prev INTEGER, type TEXT NOT NULL, version INTEGER NOT NULL,
    data BLOB NOT NULL, at INTEGER NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS event_marks (actor INTEGER NOT NULL, seq INTEGER NOT NULL,
    pos INTEGER NOT NULL, PRIMARY KEY (actor, seq)) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS snapshots (actor TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    version INTEGER NOT NULL, state BLOB NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS idempotency (actor TEXT NOT NULL, key TEXT NOT NULL,
    fingerprint TEXT, reply BLOB NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (actor, key))
    WITHOUT ROWID`,
  `CREATE INDEX IF NOT EXISTS idempotency_at ON idempotency (at)`,
  `CREATE TABLE IF NOT EXISTS reminders (id TEXT PRIMARY KEY, actor TEXT NOT NULL,
    handler TEXT NOT NULL, data BLOB NOT NULL, due INTEGER NOT NULL, cron TEXT, name TEXT,
    trace TEXT, caller BLOB)`,
  `CREATE INDEX IF NOT EXISTS reminders_due ON reminders (due, id)`,
  `CREATE TABLE IF NOT EXISTS outbox (pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL, data BLOB NOT NULL, content_type TEXT NOT NULL, at INTEGER NOT NULL)`,
];

/**
 * From version 3 to 4: reminders gain their cron expression, name, trace context and the
 * identity that scheduled them; the transactional outbox.
 */
export const MIGRATION_TO_4: readonly string[] = [
  "ALTER TABLE reminders ADD COLUMN cron TEXT",
  "ALTER TABLE reminders ADD COLUMN name TEXT",
  "ALTER TABLE reminders ADD COLUMN trace TEXT",
  "ALTER TABLE reminders ADD COLUMN caller BLOB",
  `CREATE TABLE IF NOT EXISTS outbox (pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL, data BLOB NOT NULL, content_type TEXT NOT NULL, at INTEGER NOT NULL)`,
];

/**
 * From version 4 to 5: no table changes; {@link HEADS_FROM} may be written from then on (the
 * version keeps code that would not read it away from the file).
 */
export const MIGRATION_TO_5: readonly string[] = [];

/**
 * From version 1 or 2 to 3: events move into commit order (positions given in `(actor, seq)`
 * order, so each actor's events are contiguous and `prev` is the position before), heads
 * and marks are derived from them, idempotency records gain a `fingerprint` (NULL: written
 * before fingerprints). `version1` adds the `owner` column that version 2 introduced.
 */
export function migrationTo3(version1: boolean): string[] {
  return [
    ...(version1 ? ["ALTER TABLE activations ADD COLUMN owner TEXT"] : []),
    "ALTER TABLE activations RENAME TO activations_v2",
    "ALTER TABLE events RENAME TO events_v2",
    "ALTER TABLE idempotency RENAME TO idempotency_v2",
    "DROP INDEX IF EXISTS idempotency_at",
    ...DDL,
    `INSERT INTO activations (actor, epoch, seq, owner)
       SELECT actor, epoch, seq, owner FROM activations_v2 ORDER BY actor`,
    `INSERT INTO activations (actor, epoch, seq)
       SELECT DISTINCT actor, 0, 0 FROM events_v2 WHERE true
       ON CONFLICT (actor) DO NOTHING`,
    `INSERT INTO events (pos, actor, seq, prev, type, version, data, at)
       SELECT row_number() OVER (ORDER BY e.actor, e.seq), a.id, e.seq, NULL, e.type,
         e.version, e.data, e.at
       FROM events_v2 AS e JOIN activations AS a ON a.actor = e.actor ORDER BY e.actor, e.seq`,
    "UPDATE events SET prev = pos - 1 WHERE seq > 1",
    `INSERT INTO event_marks (actor, seq, pos)
       SELECT actor, seq, pos FROM events WHERE seq % ${MARK_EVERY} = 0`,
    `UPDATE activations SET seq = h.seq, pos = h.pos
       FROM (SELECT actor, max(seq) AS seq, max(pos) AS pos FROM events GROUP BY actor) AS h
       WHERE activations.id = h.actor`,
    `INSERT INTO idempotency (actor, key, fingerprint, reply, at)
       SELECT actor, key, NULL, reply, at FROM idempotency_v2`,
    "DROP TABLE activations_v2",
    "DROP TABLE events_v2",
    "DROP TABLE idempotency_v2",
  ];
}

// ---- multi-row VALUES in fixed sizes ------------------------------------------------------

const sqlCache = new Map<string, string>();

/** `(?,?,…),(?,?,…)…`: `rows` rows of `cols` parameters. */
function valuesList(rows: number, cols: number): string {
  const key = `${rows}x${cols}`;
  let s = sqlCache.get(key);
  if (!s) {
    const row = `(?${",?".repeat(cols - 1)})`;
    s = `${row},`.repeat(rows - 1) + row;
    sqlCache.set(key, s);
  }
  return s;
}

/**
 * {@link chunked} for rows given flat (`cols` values a row, one after the other): no array
 * per row on the way.
 */
export function chunkedFlat(
  out: Stmt[],
  flat: readonly SqlValue[],
  cols: number,
  sql: (values: string) => string,
): void {
  const rows = flat.length / cols;
  let i = 0;
  while (i < rows) {
    const size = VALUES_SIZES.find((s) => s <= rows - i)!;
    out.push({ sql: sql(valuesList(size, cols)), args: flat.slice(i * cols, (i + size) * cols) });
    i += size;
  }
}

/**
 * Splits `rows` (each `cols` values) into statements of the fixed sizes, each made by
 * `sql(values)` with the `VALUES` list; `before`/`after`: arguments bound before/after the
 * rows (in text order).
 */
export function chunked(
  out: Stmt[],
  rows: readonly (readonly SqlValue[])[],
  cols: number,
  sql: (values: string) => string,
  before: readonly SqlValue[] = [],
  after: readonly SqlValue[] = [],
): void {
  let i = 0;
  while (i < rows.length) {
    const left = rows.length - i;
    const size = VALUES_SIZES.find((s) => s <= left)!;
    const args: SqlValue[] = [...before];
    for (let r = i; r < i + size; r++) {
      const row = rows[r]!;
      for (let c = 0; c < cols; c++) args.push(row[c]!);
    }
    for (const a of after) args.push(a);
    out.push({ sql: sql(valuesList(size, cols)), args });
    i += size;
  }
}

// ---- appends -----------------------------------------------------------------------------

/** Consecutive appends of one actor merged into one write (they pass or fail together). */
export interface AppendGroup {
  readonly actor: string;
  readonly epoch: number;
  readonly expectedSeq: number;
  readonly events: readonly NewEvent[];
  readonly snapshot?: Snapshot;
  readonly idempotency: readonly IdempotencyRecord[];
  /** The reminders the group leaves scheduled (none also in `cancels`). */
  readonly reminders: readonly Reminder[];
  /** Ids of reminders the group cancelled. */
  readonly cancels: readonly string[];
  /** Its outbox messages. */
  readonly outbox: readonly OutboxMessage[];
}

/** The columns of a reminder row after its id: `actor, handler, data, due, cron, name, trace, caller`. */
export function reminderRow(r: Reminder): SqlValue[] {
  return [
    r.actor,
    r.handler,
    r.data,
    r.due,
    r.cron ?? null,
    r.name ?? null,
    r.trace ?? null,
    r.caller ?? null,
  ];
}

/** A reminder from `id, actor, handler, data, due, cron, name, trace, caller` (a row). */
export function reminderOf(row: readonly unknown[], copy: (b: unknown) => Uint8Array): Reminder {
  const [id, actor, handler, data, due, cron, name, trace, caller] = row;
  return {
    id: String(id),
    actor: String(actor),
    handler: String(handler),
    data: copy(data),
    due: Number(due),
    ...(cron === null || cron === undefined ? {} : { cron: String(cron) }),
    ...(name === null || name === undefined ? {} : { name: String(name) }),
    ...(trace === null || trace === undefined ? {} : { trace: String(trace) }),
    ...(caller === null || caller === undefined ? {} : { caller: copy(caller) }),
  };
}

/** The columns a reminder is read with (see {@link reminderOf}). */
export const REMINDER_COLUMNS = "id, actor, handler, data, due, cron, name, trace, caller";

/**
 * The statements of one group commit of appends. `token` marks the head rows the fence let
 * through (`activations.batch`); every other write joins on it, so a group whose epoch or
 * expected seq did not match writes nothing. The head updates (one statement per chunk)
 * return the actors that passed. Positions: each group gets the next positions after the
 * shard's last one, in group order (a refused group leaves a gap).
 */
export function appendStatements(
  groups: readonly AppendGroup[],
  token: number,
  now: number,
): { stmts: Stmt[]; heads: number } {
  const stmts: Stmt[] = [];
  const heads: SqlValue[][] = [];
  const events: SqlValue[][] = [];
  const marks: SqlValue[][] = [];
  const snapshots: SqlValue[][] = [];
  const replies: SqlValue[][] = [];
  const reminders: SqlValue[][] = [];
  const cancels: SqlValue[][] = [];
  const outbox: SqlValue[][] = [];
  let offset = 0;
  for (const g of groups) {
    const n = g.events.length;
    heads.push([g.actor, g.epoch, g.expectedSeq, g.expectedSeq + n, n, offset]);
    offset += n;
    for (let j = 1; j <= n; j++) {
      const e = g.events[j - 1]!;
      events.push([g.actor, n, j, e.type, e.version, e.data, e.at]);
      if ((g.expectedSeq + j) % MARK_EVERY === 0) marks.push([g.actor, n, j]);
    }
    if (g.snapshot) {
      const s = g.snapshot;
      snapshots.push([g.actor, s.seq, s.version, s.state]);
    }
    for (const i of g.idempotency) replies.push([g.actor, i.key, i.fingerprint, i.reply, now]);
    for (const r of g.reminders) reminders.push([g.actor, r.id, ...reminderRow(r)]);
    for (const id of g.cancels) cancels.push([g.actor, id]);
    for (const m of g.outbox) outbox.push([g.actor, m.id, m.topic, m.data, m.contentType, m.at]);
  }
  chunked(
    stmts,
    heads,
    6,
    (v) =>
      `UPDATE activations SET prev_pos = pos, seq = v.column4,
         pos = CASE WHEN v.column5 > 0
           THEN (SELECT coalesce(max(pos), 0) FROM events) + v.column6 + v.column5 ELSE pos END,
         batch = ?
       FROM (VALUES ${v}) AS v
       WHERE activations.actor = v.column1 AND activations.epoch = v.column2
         AND activations.seq = v.column3
       RETURNING activations.actor`,
    [token],
  );
  const headStatements = stmts.length;
  const joined = "CROSS JOIN activations AS a ON a.actor = v.column1 AND a.batch = ?";
  chunked(
    stmts,
    events,
    7,
    (v) =>
      `INSERT INTO events (pos, actor, seq, prev, type, version, data, at)
       SELECT a.pos - v.column2 + v.column3, a.id, a.seq - v.column2 + v.column3,
         CASE WHEN v.column3 = 1 THEN a.prev_pos ELSE a.pos - v.column2 + v.column3 - 1 END,
         v.column4, v.column5, v.column6, v.column7
       FROM (VALUES ${v}) AS v ${joined}`,
    [],
    [token],
  );
  chunked(
    stmts,
    marks,
    3,
    (v) =>
      `INSERT INTO event_marks (actor, seq, pos)
       SELECT a.id, a.seq - v.column2 + v.column3, a.pos - v.column2 + v.column3
       FROM (VALUES ${v}) AS v ${joined}`,
    [],
    [token],
  );
  chunked(
    stmts,
    snapshots,
    4,
    (v) =>
      `INSERT INTO snapshots (actor, seq, version, state)
       SELECT v.column1, v.column2, v.column3, v.column4 FROM (VALUES ${v}) AS v ${joined}
       WHERE true ON CONFLICT (actor) DO UPDATE SET seq = excluded.seq,
         version = excluded.version, state = excluded.state`,
    [],
    [token],
  );
  chunked(
    stmts,
    replies,
    5,
    (v) =>
      `INSERT OR REPLACE INTO idempotency (actor, key, fingerprint, reply, at)
       SELECT v.column1, v.column2, v.column3, v.column4, v.column5
       FROM (VALUES ${v}) AS v ${joined}`,
    [],
    [token],
  );
  chunked(
    stmts,
    cancels,
    2,
    (v) => `DELETE FROM reminders WHERE id IN (SELECT v.column2 FROM (VALUES ${v}) AS v ${joined})`,
    [],
    [token],
  );
  chunked(
    stmts,
    reminders,
    10,
    (v) =>
      `INSERT OR REPLACE INTO reminders (${REMINDER_COLUMNS})
       SELECT v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8,
         v.column9, v.column10
       FROM (VALUES ${v}) AS v ${joined}`,
    [],
    [token],
  );
  chunked(
    stmts,
    outbox,
    6,
    (v) =>
      `INSERT INTO outbox (id, topic, data, content_type, at)
       SELECT v.column2, v.column3, v.column4, v.column5, v.column6
       FROM (VALUES ${v}) AS v ${joined} WHERE true ON CONFLICT (id) DO NOTHING`,
    [],
    [token],
  );
  return { stmts, heads: headStatements };
}

// ---- appends on a local database (interactive) ------------------------------------------

/**
 * The statements of the same group commit where each step's rows are read before the next
 * is built (a local database, where a statement costs microseconds, not a round trip): the
 * head updates by row id return what passed, and every other row is a plain multi-row insert
 * with values computed here, joined with nothing.
 */
export const localAppend = {
  /** The row id of each actor (those without a head row were never activated). */
  ids(actors: readonly string[]): Stmt[] {
    const stmts: Stmt[] = [];
    chunked(
      stmts,
      actors.map((a) => [a]),
      1,
      (v) =>
        `SELECT a.actor, a.id FROM (VALUES ${v}) AS v
         CROSS JOIN activations AS a ON a.actor = v.column1`,
    );
    return stmts;
  },
  /** The shard's last position. */
  top: { sql: "SELECT coalesce(max(pos), 0) FROM events", args: [] } as Stmt,
  /**
   * `[id, epoch, expectedSeq, newSeq, newPos | null]` per group: the fence and the new head;
   * returns `[id, previous head position]` of each that passed.
   */
  heads(rows: readonly (readonly SqlValue[])[]): Stmt[] {
    const stmts: Stmt[] = [];
    chunked(
      stmts,
      rows,
      5,
      (v) =>
        `UPDATE activations SET prev_pos = pos, seq = v.column4, pos = coalesce(v.column5, pos)
         FROM (VALUES ${v}) AS v
         WHERE activations.id = v.column1 AND activations.epoch = v.column2
           AND activations.seq = v.column3
         RETURNING activations.id, activations.prev_pos`,
    );
    return stmts;
  },
  /**
   * The same update as {@link localAppend.heads} for rows whose fence the writer checked
   * (still in the `WHERE`, as the backstop), without `RETURNING`; rows flat, 5 values a row.
   */
  headsChecked(out: Stmt[], flat: readonly SqlValue[]): void {
    chunkedFlat(
      out,
      flat,
      5,
      (v) =>
        `UPDATE activations SET prev_pos = pos, seq = v.column4, pos = coalesce(v.column5, pos)
         FROM (VALUES ${v}) AS v
         WHERE activations.id = v.column1 AND activations.epoch = v.column2
           AND activations.seq = v.column3`,
    );
  },
  /**
   * Writes deferred heads: rows `[id, epoch, seq, pos]` flat (4 values a row); a row whose
   * epoch changed is left alone (the caller counts the rows changed).
   */
  flush(out: Stmt[], flat: readonly SqlValue[]): void {
    chunkedFlat(
      out,
      flat,
      4,
      (v) =>
        `UPDATE activations SET seq = v.column3, pos = v.column4 FROM (VALUES ${v}) AS v
         WHERE activations.id = v.column1 AND activations.epoch = v.column2`,
    );
  },
  /** Marks heads as lagging from position `pos` on (kept when already marked earlier). */
  deferFrom(pos: number): Stmt {
    return {
      sql: `INSERT INTO troupe_meta (key, value) VALUES ('${HEADS_FROM}', ?)
            ON CONFLICT (key) DO NOTHING`,
      args: [pos],
    };
  },
  /** Rows `[pos, actor id, seq, prev, type, version, data, at]`, flat (8 values a row). */
  events(out: Stmt[], flat: readonly SqlValue[]): void {
    chunkedFlat(
      out,
      flat,
      8,
      (v) => `INSERT INTO events (pos, actor, seq, prev, type, version, data, at) VALUES ${v}`,
    );
  },
  /** Rows `[actor id, seq, pos]`. */
  marks(out: Stmt[], rows: readonly (readonly SqlValue[])[]): void {
    chunked(out, rows, 3, (v) => `INSERT INTO event_marks (actor, seq, pos) VALUES ${v}`);
  },
  /** Rows `[actor, seq, version, state]`. */
  snapshots(out: Stmt[], rows: readonly (readonly SqlValue[])[]): void {
    chunked(
      out,
      rows,
      4,
      (v) =>
        `INSERT INTO snapshots (actor, seq, version, state) VALUES ${v}
         ON CONFLICT (actor) DO UPDATE SET seq = excluded.seq, version = excluded.version,
           state = excluded.state`,
    );
  },
  /** Rows `[actor, key, fingerprint, reply, at]`. */
  replies(out: Stmt[], rows: readonly (readonly SqlValue[])[]): void {
    chunked(
      out,
      rows,
      5,
      (v) => `INSERT OR REPLACE INTO idempotency (actor, key, fingerprint, reply, at) VALUES ${v}`,
    );
  },
  /** Rows `[id, ...reminderRow]`. */
  reminders(out: Stmt[], rows: readonly (readonly SqlValue[])[]): void {
    chunked(
      out,
      rows,
      9,
      (v) => `INSERT OR REPLACE INTO reminders (${REMINDER_COLUMNS}) VALUES ${v}`,
    );
  },
  /** Rows `[id]`: reminders cancelled. */
  cancels(out: Stmt[], rows: readonly (readonly SqlValue[])[]): void {
    chunked(
      out,
      rows,
      1,
      (v) => `DELETE FROM reminders WHERE id IN (SELECT column1 FROM (VALUES ${v}))`,
    );
  },
  /** Rows `[id, topic, data, content_type, at]`. */
  outbox(out: Stmt[], rows: readonly (readonly SqlValue[])[]): void {
    chunked(
      out,
      rows,
      5,
      (v) =>
        `INSERT INTO outbox (id, topic, data, content_type, at) VALUES ${v}
         ON CONFLICT (id) DO NOTHING`,
    );
  },
};

/** Moves a repeating reminder to its next due time if it is still the one that fired. */
export function rescheduleStatement(id: string, fromDue: number, toDue: number): Stmt {
  return {
    sql: "UPDATE reminders SET due = ? WHERE id = ? AND due = ?",
    args: [toDue, id, fromDue],
  };
}

/** The oldest outbox messages. */
export function outboxStatement(limit: number): Stmt {
  return {
    sql: "SELECT id, topic, data, content_type, at FROM outbox ORDER BY pos LIMIT ?",
    args: [limit],
  };
}

/** Forgets outbox messages by id. */
export function deleteOutboxStatements(ids: readonly string[]): Stmt[] {
  const stmts: Stmt[] = [];
  chunked(
    stmts,
    ids.map((id) => [id]),
    1,
    (v) => `DELETE FROM outbox WHERE id IN (SELECT column1 FROM (VALUES ${v}))`,
  );
  return stmts;
}

/** The epoch and head of each actor (to say why an append was refused). */
export function headsStatements(actors: readonly string[]): Stmt[] {
  const stmts: Stmt[] = [];
  chunked(
    stmts,
    actors.map((a) => [a]),
    1,
    (v) =>
      `SELECT a.actor, a.epoch, a.seq FROM (VALUES ${v}) AS v
       CROSS JOIN activations AS a ON a.actor = v.column1`,
  );
  return stmts;
}

// ---- activations -------------------------------------------------------------------------

/** One activation request of a batch (at most one per actor per batch). */
export interface ActivateRequest {
  readonly actor: string;
  /** The claiming node; undefined: no claim (the owner becomes none). */
  readonly node?: string;
  readonly takeOver?: string;
}

/**
 * The statements of a batch of activations: create missing heads, bump the epoch (and set
 * the owner) where the claim is allowed, then read for each actor its head and whether it
 * won, and for the winners their snapshot and the events after it (walking `prev` links back
 * from the head).
 */
export function activateStatements(
  requests: readonly ActivateRequest[],
  token: number,
): { stmts: Stmt[]; result: number; snapshots: [number, number]; events: [number, number] } {
  const stmts: Stmt[] = [];
  const actors = requests.map((r) => [r.actor]);
  chunked(
    stmts,
    actors,
    1,
    (v) =>
      `INSERT INTO activations (actor, epoch, seq) SELECT column1, 0, 0 FROM (VALUES ${v})
       WHERE true ON CONFLICT (actor) DO NOTHING`,
  );
  chunked(
    stmts,
    requests.map((
      r,
    ) => [r.actor, r.node ?? null, r.takeOver ?? null, r.node === undefined ? 0 : 1]),
    4,
    (v) =>
      `UPDATE activations SET epoch = epoch + 1, owner = v.column2, batch = ?
       FROM (VALUES ${v}) AS v
       WHERE activations.actor = v.column1 AND (v.column4 = 0 OR activations.owner IS NULL
         OR activations.owner = v.column2 OR activations.owner = v.column3)`,
    [token],
  );
  const result = stmts.length;
  chunked(
    stmts,
    actors,
    1,
    (v) =>
      `SELECT a.actor, a.epoch, a.seq, a.owner, a.batch = ?, a.id, a.pos FROM (VALUES ${v}) AS v
       CROSS JOIN activations AS a ON a.actor = v.column1`,
    [token],
  );
  const snapStart = stmts.length;
  chunked(
    stmts,
    actors,
    1,
    (v) =>
      `SELECT s.actor, s.seq, s.version, s.state FROM (VALUES ${v}) AS v
       CROSS JOIN activations AS a ON a.actor = v.column1 AND a.batch = ?
       JOIN snapshots AS s ON s.actor = a.actor`,
    [],
    [token],
  );
  const eventsStart = stmts.length;
  chunked(
    stmts,
    actors,
    1,
    (v) =>
      `WITH RECURSIVE chain(pos, actor, floor) AS (
         SELECT a.pos, a.actor, coalesce(s.seq, 0) FROM (VALUES ${v}) AS v
           CROSS JOIN activations AS a ON a.actor = v.column1 AND a.batch = ?
           LEFT JOIN snapshots AS s ON s.actor = a.actor
         WHERE a.pos IS NOT NULL AND a.seq > coalesce(s.seq, 0)
         UNION ALL
         SELECT e.prev, c.actor, c.floor FROM chain AS c JOIN events AS e ON e.pos = c.pos
         WHERE e.seq > c.floor + 1
       )
       SELECT c.actor, e.seq, e.type, e.version, e.data, e.at
       FROM chain AS c JOIN events AS e ON e.pos = c.pos`,
    [],
    [token],
  );
  return {
    stmts,
    result,
    snapshots: [snapStart, eventsStart],
    events: [eventsStart, stmts.length],
  };
}

/** Releases: clear the owner where it is still that node at that epoch. */
export function releaseStatements(
  releases: readonly { actor: string; node: string; epoch: number }[],
): Stmt[] {
  const stmts: Stmt[] = [];
  chunked(
    stmts,
    releases.map((r) => [r.actor, r.node, r.epoch]),
    3,
    (v) =>
      `UPDATE activations SET owner = NULL FROM (VALUES ${v}) AS v
       WHERE activations.actor = v.column1 AND activations.owner = v.column2
         AND activations.epoch = v.column3`,
  );
  return stmts;
}

/** Deletes reminders by id. */
export function deleteRemindersStatements(ids: readonly string[]): Stmt[] {
  const stmts: Stmt[] = [];
  chunked(
    stmts,
    ids.map((id) => [id]),
    1,
    (v) => `DELETE FROM reminders WHERE id IN (SELECT column1 FROM (VALUES ${v}))`,
  );
  return stmts;
}

// ---- reads -------------------------------------------------------------------------------

/**
 * Events of `actor` with `from <= seq <= to`, in seq order: from the first mark at or after
 * `to` (else its last event: from the events when heads lag, see {@link HEADS_FROM}, else its
 * head), walking `prev` links back to `from`.
 */
export function readStatement(actor: string, from: number, to: number): Stmt {
  return {
    sql: `WITH RECURSIVE chain(pos) AS (
            SELECT start FROM (SELECT coalesce((SELECT m.pos FROM event_marks AS m
              WHERE m.actor = a.id AND m.seq >= ? ORDER BY m.seq LIMIT 1),
              (SELECT max(e.pos) FROM events AS e WHERE e.actor = a.id
                AND e.pos >= ${HEADS_FROM_POS}), a.pos) AS start
            FROM activations AS a WHERE a.actor = ?) WHERE start IS NOT NULL
            UNION ALL
            SELECT e.prev FROM chain AS c JOIN events AS e ON e.pos = c.pos
            WHERE e.seq > ? AND e.prev IS NOT NULL
          )
          SELECT e.seq, e.type, e.version, e.data, e.at FROM chain AS c
          JOIN events AS e ON e.pos = c.pos WHERE e.seq >= ? AND e.seq <= ? ORDER BY e.seq`,
    args: [to, actor, from, from, to],
  };
}

/** Events of the shard after a position, in commit order. */
export function committedStatement(after: number, limit: number): Stmt {
  return {
    sql: `SELECT e.pos, a.actor, e.seq, e.type, e.version, e.data, e.at FROM events AS e
          CROSS JOIN activations AS a ON a.id = e.actor
          WHERE e.pos > ? ORDER BY e.pos LIMIT ?`,
    args: [after, limit],
  };
}

/** Idempotency records past the retention. */
export function pruneStatements(before: number, maxPerActor: number): Stmt[] {
  return [
    { sql: "DELETE FROM idempotency WHERE at < ?", args: [before] },
    {
      sql: `DELETE FROM idempotency WHERE (actor, key) IN (
              SELECT actor, key FROM (
                SELECT actor, key,
                  row_number() OVER (PARTITION BY actor ORDER BY at DESC, key DESC) AS n
                FROM idempotency WHERE actor IN (
                  SELECT actor FROM idempotency GROUP BY actor HAVING count(*) > ?)
              ) WHERE n > ?)`,
      args: [maxPerActor, maxPerActor],
    },
  ];
}
