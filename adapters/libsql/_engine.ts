/**
 * The database side of one journal shard: opening and migrating its database, and running
 * batches of writes and reads on an {@link Executor}. It runs in a worker thread that owns a
 * local file's connection (`_worker.ts`), or on the calling thread with an asynchronous client
 * for a remote server (`_connection.ts`). Nothing here touches the event loop's time budget
 * on the main thread.
 *
 * @module
 */

import {
  type ActivateRequest,
  activateStatements,
  type AppendGroup,
  appendStatements,
  CATCH_UP,
  DDL,
  deleteRemindersStatements,
  HEADS_CURRENT,
  headsStatements,
  localAppend,
  MARK_EVERY,
  MIGRATION_TO_4,
  MIGRATION_TO_5,
  migrationTo3,
  releaseStatements,
  reminderRow,
  SCHEMA_VERSION,
  type SqlValue,
  type Stmt,
} from "./_sql.ts";
import { decodeGroups } from "./_wire.ts";

/** Rows of one statement, each row an array of column values. */
export type Rows = unknown[][];

/** What runs SQL: a local connection (in a worker) or a remote client. */
export interface Executor {
  /**
   * Runs `stmts` in order in one write transaction (`BEGIN IMMEDIATE … COMMIT`) and returns
   * the rows of each; on any error rolls back and throws.
   */
  write(stmts: readonly Stmt[]): Promise<Rows[]>;
  /** Runs reads (in one read transaction when there are several). */
  read(stmts: readonly Stmt[]): Promise<Rows[]>;
  /**
   * An interactive write transaction (migrations; every batch where `interactive`). The
   * connection is the transaction's alone until it ends: other calls wait, and no statement
   * of it ever runs outside it (if the transaction ended early, the rest is refused).
   */
  transaction<T>(fn: (run: (stmt: Stmt) => Promise<Rows>) => Promise<T>): Promise<T>;
  /**
   * Whether a statement costs little enough (a local database) that a batch reads each
   * step's rows before building the next, instead of sending all of it at once (a remote one).
   */
  readonly interactive: boolean;
  /** Releases the connection. */
  close(): void;
}

/** An error of the database, with SQLite's code when it has one (crosses the worker boundary). */
export interface EngineError {
  readonly name: string;
  readonly message: string;
  /** SQLite's code (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_PRIMARYKEY`, …) or `CLOSED`, `SCHEMA`, `SHARDS`. */
  readonly code?: string;
}

/**
 * Whether an error says the database is locked (worth trying again later): busy, locked, or
 * a lost race for WAL mode's locks (`SQLITE_PROTOCOL`).
 */
export function isBusyCode(code: string | undefined): boolean {
  return code !== undefined &&
    (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") ||
      code === "SQLITE_PROTOCOL");
}

/** A plain, cloneable form of any error. */
export function toEngineError(err: unknown): EngineError {
  if (err && typeof err === "object") {
    const e = err as { name?: unknown; message?: unknown; code?: unknown; extendedCode?: unknown };
    const code = typeof e.extendedCode === "string"
      ? e.extendedCode
      : typeof e.code === "string"
      ? e.code
      : undefined;
    return {
      name: typeof e.name === "string" ? e.name : "Error",
      message: typeof e.message === "string" ? e.message : String(err),
      ...(code !== undefined ? { code } : {}),
    };
  }
  return { name: "Error", message: String(err) };
}

/** Thrown by the engine with a code of its own. */
export class EngineFailure extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = "EngineFailure";
  }
}

/** What a shard database records about the shards it belongs to. */
export interface ShardInfo {
  /** This database's place among the shards. */
  readonly index: number;
  /** How many shards there are. */
  readonly count: number;
}

/** A batch of writes committed in one transaction, as it is sent to the database thread. */
export interface WriteBatch {
  /** Append groups (at most one per actor), encoded by `encodeGroups` (`_wire.ts`). */
  readonly groups: Uint8Array;
  /** Releases of ownership. */
  readonly releases: readonly { actor: string; node: string; epoch: number }[];
  /** Activations (at most one per actor). */
  readonly activations: readonly ActivateRequest[];
  /** Reminders to delete, by id. */
  readonly deletes: readonly string[];
  /**
   * Other writes (record store, reminders, outbox), each a list of statements whose rows come
   * back. They never write the heads (`activations`): the engine's cache stays valid.
   */
  readonly custom: readonly (readonly Stmt[])[];
  /** Wall clock for idempotency records. */
  readonly now: number;
}

/** The outcome of one activation of a batch. */
export type ActivateOutcome =
  | {
    readonly won: true;
    readonly epoch: number;
    readonly seq: number;
    readonly snapshot?: { seq: number; version: number; state: Uint8Array };
    readonly events: { seq: number; type: string; version: number; data: Uint8Array; at: number }[];
  }
  | { readonly won: false; readonly owner: string; readonly epoch: number };

/** A batch with its groups decoded. */
interface Batch extends Omit<WriteBatch, "groups"> {
  readonly groups: readonly AppendGroup[];
}

/** What the append groups of a batch did. */
interface GroupResults {
  /** Per group: {@link GROUP_WRITTEN} or {@link GROUP_REFUSED}. */
  readonly status: Uint8Array;
  /** `[group, epoch, seq]`: the head a refused group's actor had (when it has one). */
  readonly heads: [number, number, number][];
}

/** What a batch did. */
interface BatchResult {
  /** The append groups: each written, or refused with its actor's epoch and head then. */
  readonly groups: GroupResults;
  /** Per activation. */
  readonly activations: readonly ActivateOutcome[];
  /** Per custom write: the rows of each of its statements. */
  readonly custom: readonly Rows[][];
}

/** Per item of a batch run alone after the whole batch failed. */
export type Isolated<T> = { ok: true; value: T } | { ok: false; error: EngineError };

/** Per append group of a batch: written, refused by its check, or failed. */
export const GROUP_FAILED = 0, GROUP_WRITTEN = 1, GROUP_REFUSED = 2;

/** The result of a batch whose items may have failed one by one. */
export interface BatchOutcome {
  /** Set when the batch as a whole failed (every item failed with it). */
  readonly error?: EngineError;
  /** Per group: {@link GROUP_WRITTEN}, {@link GROUP_REFUSED} or {@link GROUP_FAILED}. */
  readonly groups: Uint8Array;
  /** `[group, epoch, seq]`: the head a refused group's actor had (when it has one). */
  readonly heads: readonly [number, number, number][];
  /** `[group, error]` of the groups that failed. */
  readonly groupErrors: readonly [number, EngineError][];
  readonly releases: readonly Isolated<void>[];
  readonly activations: readonly Isolated<ActivateOutcome>[];
  readonly deletes: readonly Isolated<void>[];
  readonly custom: readonly Isolated<Rows[]>[];
}

/** The outcome of groups each run alone (or all failed), compactly (see {@link BatchOutcome}). */
function groupsOutcome(
  results: readonly Isolated<GroupResults>[],
): Pick<BatchOutcome, "groups" | "heads" | "groupErrors"> {
  const groups = new Uint8Array(results.length);
  const heads: [number, number, number][] = [];
  const groupErrors: [number, EngineError][] = [];
  results.forEach((r, i) => {
    if (!r.ok) {
      groups[i] = GROUP_FAILED;
      groupErrors.push([i, r.error]);
    } else {
      groups[i] = r.value.status[0]!;
      for (const [, epoch, seq] of r.value.heads) heads.push([i, epoch, seq]);
    }
  });
  return { groups, heads, groupErrors };
}

/** Options of {@link Engine}. */
export interface EngineOptions {
  /** For messages. */
  readonly url: string;
  /** Where the database is one of several shards. */
  readonly shard?: ShardInfo;
  /** Most actors whose row id and head the writer keeps (default {@link CACHED_ACTORS}). */
  readonly cachedActors?: number;
}

/** A random token that marks the rows a statement let through (unique per batch). */
function token(): number {
  return Math.floor(Math.random() * 2 ** 52) + 1;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** An actor's head as this connection last wrote it (updated in place after each commit). */
interface CachedHead {
  epoch: number;
  seq: number;
  /** Position of its last event (null: none yet). */
  pos: number | null;
}

/** What a local transaction learned of the heads, kept once it commits. */
interface StagedHeads {
  /** `PRAGMA data_version` read inside it. */
  version: number | undefined;
  /** The heads it wrote, flat: `id, epoch, seq, pos` each. */
  heads: (number | null)[];
  /** Actors whose heads it changed otherwise (claims lost): read again next time. */
  dropped: number[];
  /** Heads of the claims it won, flat: `id, epoch, seq, pos` each. */
  claimed: (number | null)[];
  /** Whether it brought every head row up from the events ({@link CATCH_UP}). */
  caughtUp: boolean;
  /** Whether it wrote every deferred head (none lags any more). */
  flushedAll: boolean;
  /** Deferred heads it wrote (the others still lag). */
  flushed: number[];
  /** Actors whose heads it deferred (their rows lag behind the cache). */
  deferred: number[];
  /** Where it marked the heads as lagging from (the first deferral since they were current). */
  deferredFrom: number | undefined;
  /** The shard's last position after it (undefined: no appends). */
  top: number | undefined;
}

const DATA_VERSION: Stmt = { sql: "PRAGMA data_version", args: [] };
const TOTAL_CHANGES: Stmt = { sql: "SELECT total_changes()", args: [] };

/**
 * Runs head updates whose every row must apply (the writer checked them against its cache);
 * fails the batch when the database changed another number of rows.
 */
async function runHeads(
  run: (stmt: Stmt) => Promise<Rows>,
  stmts: readonly Stmt[],
  rows: number,
): Promise<void> {
  const before = Number((await run(TOTAL_CHANGES))[0]?.[0]);
  for (const s of stmts) await run(s);
  const changed = Number((await run(TOTAL_CHANGES))[0]?.[0]) - before;
  if (changed !== rows) {
    throw new EngineFailure(
      `the journal's cached heads disagree with the database (${changed} of ${rows} updated)`,
      "HEADS",
    );
  }
}

/**
 * Deferred heads are written once this many actors have one, once the events since the first
 * deferral reach {@link FLUSH_EVENTS}, or {@link FLUSH_MS} after it: this bounds what a
 * catch-up after a crash (or another process's first write) scans, and the memory.
 */
const FLUSH_ACTORS = 65_536;
/** See {@link FLUSH_ACTORS}. */
const FLUSH_EVENTS = 131_072;
/** See {@link FLUSH_ACTORS}. */
const FLUSH_MS = 1_000;
/**
 * Most actors whose row id and head a shard's writer keeps (~190 bytes each); past it, both
 * start again (heads caught up from the events): a shard of a million actors writes each
 * event without touching its actor's row.
 */
const CACHED_ACTORS = 1_000_000;

/** Runs the journal's operations on one shard's database. */
export class Engine {
  readonly #exec: Executor;
  readonly #options: EngineOptions;

  readonly #cachedActors: number;

  constructor(exec: Executor, options: EngineOptions) {
    this.#exec = exec;
    this.#options = options;
    this.#cachedActors = options.cachedActors ?? CACHED_ACTORS;
  }

  /** Creates or migrates the schema and checks the shard record. */
  async open(): Promise<void> {
    await this.#exec.transaction(async (run) => {
      const meta = await run({
        sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'troupe_meta'",
        args: [],
      });
      const values = new Map<string, unknown>();
      if (meta.length > 0) {
        for (const [k, v] of await run({ sql: "SELECT key, value FROM troupe_meta", args: [] })) {
          values.set(String(k), v);
        }
      }
      const version = Number(values.get("schema_version") ?? 0);
      if (version > SCHEMA_VERSION) {
        throw new EngineFailure(
          `The journal database ${this.#options.url} has schema version ${version}, newer than this code supports (${SCHEMA_VERSION})`,
          "SCHEMA",
        );
      }
      if (version < SCHEMA_VERSION) {
        const stmts = version === 0 ? DDL : [
          ...(version < 3 ? migrationTo3(version === 1) : []),
          ...(version < 4 ? MIGRATION_TO_4 : []),
          ...MIGRATION_TO_5,
        ];
        for (const sql of stmts) await run({ sql, args: [] });
        await run({
          sql: `INSERT INTO troupe_meta (key, value) VALUES ('schema_version', ?)
                ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
          args: [SCHEMA_VERSION],
        });
      }
      const shard = this.#options.shard ?? { index: 0, count: 1 };
      const count = values.get("shard_count");
      const index = values.get("shard_index");
      if (count === undefined) {
        // A database written before shards were recorded holds a journal of one shard.
        const empty = version > 0 && shard.count > 1 && !(await this.#empty(run));
        if (empty) {
          throw new EngineFailure(
            `The journal database ${this.#options.url} holds a journal without shards; it cannot become shard ${shard.index} of ${shard.count}`,
            "SHARDS",
          );
        }
        await run({
          sql: `INSERT INTO troupe_meta (key, value) VALUES ('shard_count', ?), ('shard_index', ?)
                ON CONFLICT (key) DO NOTHING`,
          args: [shard.count, shard.index],
        });
      } else if (Number(count) !== shard.count || Number(index) !== shard.index) {
        throw new EngineFailure(
          `The journal database ${this.#options.url} is shard ${Number(index)} of ${
            Number(count)
          } shards, but was opened as shard ${shard.index} of ${shard.count}: open the journal with the same shard URLs, in the same order`,
          "SHARDS",
        );
      }
    });
  }

  async #empty(run: (stmt: Stmt) => Promise<Rows>): Promise<boolean> {
    const rows = await run({
      sql: "SELECT (SELECT count(*) FROM activations) + (SELECT count(*) FROM reminders)",
      args: [],
    });
    return Number(rows[0]?.[0] ?? 0) === 0;
  }

  /**
   * Commits a batch, retrying while the database is locked for up to `timeoutMs`. When the
   * batch fails otherwise, each item is tried alone, so one bad item fails by itself.
   */
  async batch(w: WriteBatch, timeoutMs: number): Promise<BatchOutcome> {
    const deadline = performance.now() + timeoutMs;
    const b: Batch = { ...w, groups: decodeGroups(w.groups) };
    try {
      const r = await this.#retrying(deadline, () => this.#commit(b));
      return {
        groups: r.groups.status,
        heads: r.groups.heads,
        groupErrors: [],
        releases: b.releases.map(() => ({ ok: true, value: undefined })),
        activations: r.activations.map((value) => ({ ok: true, value })),
        deletes: b.deletes.map(() => ({ ok: true, value: undefined })),
        custom: r.custom.map((value) => ({ ok: true, value })),
      };
    } catch (err) {
      const error = toEngineError(err);
      const items = b.groups.length + b.releases.length + b.activations.length +
        b.deletes.length + b.custom.length;
      if (items === 1 || isBusyCode(error.code) || error.code === "CLOSED") {
        const failed = { ok: false as const, error };
        return {
          error,
          ...groupsOutcome(b.groups.map(() => failed)),
          releases: b.releases.map(() => failed),
          activations: b.activations.map(() => failed),
          deletes: b.deletes.map(() => failed),
          custom: b.custom.map(() => failed),
        };
      }
      return await this.#isolated(b, deadline);
    }
  }

  async #isolated(b: Batch, deadline: number): Promise<BatchOutcome> {
    const none: Batch = {
      ...b,
      groups: [],
      releases: [],
      activations: [],
      deletes: [],
      custom: [],
    };
    const one = async <T>(part: Partial<Batch>, pick: (r: BatchResult) => T) => {
      try {
        const r = await this.#retrying(deadline, () => this.#commit({ ...none, ...part }));
        return { ok: true as const, value: pick(r) };
      } catch (err) {
        return { ok: false as const, error: toEngineError(err) };
      }
    };
    const groups = [];
    for (const g of b.groups) groups.push(await one({ groups: [g] }, (r) => r.groups));
    const releases = [];
    for (const x of b.releases) releases.push(await one({ releases: [x] }, () => undefined));
    const activations = [];
    for (const a of b.activations) {
      activations.push(await one({ activations: [a] }, (r) => r.activations[0]!));
    }
    const deletes = [];
    for (const d of b.deletes) deletes.push(await one({ deletes: [d] }, () => undefined));
    const custom = [];
    for (const c of b.custom) custom.push(await one({ custom: [c] }, (r) => r.custom[0]!));
    return { ...groupsOutcome(groups), releases, activations, deletes, custom };
  }

  /** Runs `fn` again after short pauses while the database is locked, until `deadline`. */
  async #retrying<T>(deadline: number, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0;; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isBusyCode(toEngineError(err).code) || performance.now() >= deadline) throw err;
      }
      // Between tries the thread serves other calls (reads do not wait for the lock).
      const pause = Math.min(50, 2 ** attempt) * (0.5 + Math.random());
      await delay(Math.min(pause, Math.max(0, deadline - performance.now())));
    }
  }

  async #commit(b: Batch): Promise<BatchResult> {
    if (this.#exec.interactive) {
      const staged: StagedHeads = {
        version: undefined,
        heads: [],
        dropped: [],
        claimed: [],
        caughtUp: false,
        flushedAll: false,
        flushed: [],
        deferred: [],
        deferredFrom: undefined,
        top: undefined,
      };
      try {
        const result = await this.#exec.transaction((run) => this.#commitLocal(b, run, staged));
        // Committed: what the transaction wrote is the heads now.
        const dirty = this.#dirty;
        if (staged.caughtUp) this.#stale = false;
        if (staged.flushedAll) {
          dirty.clear();
          this.#deferredFrom = undefined;
        }
        for (const id of staged.flushed) dirty.delete(id);
        for (const id of staged.deferred) dirty.add(id);
        if (staged.top !== undefined) this.#top = staged.top;
        if (staged.deferredFrom !== undefined) {
          this.#deferredFrom = staged.deferredFrom;
          this.#deferredAt = performance.now();
        }
        const cache = this.#heads;
        const h = staged.heads;
        for (let k = 0; k < h.length; k += 4) {
          const id = h[k]!, epoch = h[k + 1]!, seq = h[k + 2]!, pos = h[k + 3]!;
          const head = cache.get(id);
          if (head) {
            head.epoch = epoch;
            head.seq = seq;
            head.pos = pos;
          } else cache.set(id, { epoch, seq, pos });
        }
        for (const id of staged.dropped) cache.delete(id);
        const c = staged.claimed;
        for (let k = 0; k < c.length; k += 4) {
          cache.set(c[k]!, { epoch: c[k + 1]!, seq: c[k + 2]!, pos: c[k + 3]! });
        }
        this.#headsVersion = staged.version;
        return result;
      } catch (err) {
        this.#forget(); // whatever the cache said may not hold any more
        throw err;
      }
    }
    const stmts: Stmt[] = [];
    const appendToken = token();
    const appends = appendStatements(b.groups, appendToken, b.now);
    for (const s of appends.stmts) stmts.push(s);
    for (const s of releaseStatements(b.releases)) stmts.push(s);
    for (const s of deleteRemindersStatements(b.deletes)) stmts.push(s);
    const base = stmts.length;
    const act = activateStatements(b.activations, token());
    for (const s of act.stmts) stmts.push(s);
    const customAt: [number, number][] = [];
    for (const c of b.custom) {
      customAt.push([stmts.length, stmts.length + c.length]);
      for (const s of c) stmts.push(s);
    }
    // A local writer of the same file may have left heads behind (a remote server has none:
    // nothing but this path writes it); cheap when none lag.
    const rows = (await this.#exec.write([...CATCH_UP, ...stmts])).slice(CATCH_UP.length);

    // Appends: the head updates returned the actors that passed.
    const passed = new Set<string>();
    for (let i = 0; i < appends.heads; i++) for (const r of rows[i]!) passed.add(String(r[0]));
    const refused = b.groups.filter((g) => !passed.has(g.actor)).map((g) => g.actor);
    const heads = new Map<string, { epoch: number; seq: number }>();
    if (refused.length > 0) {
      // Read after the commit, for the message only.
      try {
        for (const rs of await this.#exec.read(headsStatements(refused))) {
          for (const [actor, epoch, seq] of rs) {
            heads.set(String(actor), { epoch: Number(epoch), seq: Number(seq) });
          }
        }
      } catch {
        // the messages get less precise, the outcome is the same
      }
    }
    const status = new Uint8Array(b.groups.length);
    const refusedHeads: [number, number, number][] = [];
    b.groups.forEach((g, i) => {
      if (passed.has(g.actor)) return void (status[i] = GROUP_WRITTEN);
      status[i] = GROUP_REFUSED;
      const head = heads.get(g.actor);
      if (head) refusedHeads.push([i, head.epoch, head.seq]);
    });
    const groups = { status, heads: refusedHeads };

    const activations = activationOutcomes(b.activations, rows, base, act);
    const custom = customAt.map(([from, to]) => rows.slice(from, to));
    return { groups, activations, custom };
  }

  /** Row ids of actors, by key (they never change once a head row exists). */
  readonly #ids = new Map<string, number>();
  /**
   * The heads this connection wrote last (by actor row id), valid while no other connection
   * committed since: SQLite's `PRAGMA data_version` of this connection, read inside each write
   * transaction, tells (it changes only with other connections' commits). With it the fence of
   * an append is checked here and the previous position known, so the head update needs no
   * `RETURNING`; the update keeps the fence in its `WHERE` as the backstop, and a count of the
   * rows it changed that differs fails the batch.
   */
  readonly #heads = new Map<number, CachedHead>();
  #headsVersion: number | undefined;
  /**
   * Row ids whose head this connection deferred: the cache has it, the row lags (see
   * `HEADS_FROM` in `_sql.ts`). Only while this connection is the file's only writer: when
   * another commits, the cache goes and the heads are caught up from the events.
   */
  readonly #dirty = new Set<number>();
  /** The position the heads lag from (as marked in the database), while some do. */
  #deferredFrom: number | undefined;
  /** `performance.now()` when they started to lag. */
  #deferredAt = 0;
  /** The shard's last position as of this connection's last commit with appends. */
  #top = 0;
  /** Whether the cache cannot be trusted: heads are caught up before it is used again. */
  #stale = true;

  /** Forgets the cache: the next write that needs heads catches them up from the events. */
  #forget(): void {
    this.#heads.clear();
    this.#dirty.clear();
    this.#deferredFrom = undefined;
    this.#stale = true;
  }

  /**
   * Writes the heads this connection deferred and marks them current, in a transaction of its
   * own (closing: a file at rest has every head in its row). Without one, the next writer
   * catches them up.
   */
  async flush(): Promise<void> {
    if (!this.#exec.interactive || this.#dirty.size === 0) return;
    try {
      await this.#exec.transaction(async (run) => {
        const version = Number((await run(DATA_VERSION))[0]?.[0]);
        if (version !== this.#headsVersion) return; // another wrote: it caught them up or will
        for (const s of this.#flushStatements([...this.#dirty])) await run(s);
        await run(HEADS_CURRENT);
      });
      this.#dirty.clear();
      this.#deferredFrom = undefined;
    } catch {
      this.#forget();
    }
  }

  /** The statements that write the deferred heads of `ids` from the cache. */
  #flushStatements(ids: Iterable<number>): Stmt[] {
    const flat: SqlValue[] = [];
    for (const id of ids) {
      const h = this.#heads.get(id)!;
      flat.push(id, h.epoch, h.seq, h.pos);
    }
    const out: Stmt[] = [];
    localAppend.flush(out, flat);
    return out;
  }

  /** {@link #commit} on a local database, inside its write transaction. */
  async #commitLocal(
    b: Batch,
    run: (stmt: Stmt) => Promise<Rows>,
    staged: StagedHeads,
  ): Promise<BatchResult> {
    const ids = this.#ids;
    const cache = this.#heads;
    const groups = b.groups;
    const n = groups.length;
    const status = new Uint8Array(n);
    const refusedHeads: [number, number, number][] = [];
    const dirty = this.#dirty;
    // Another connection committed since this one last did (or the cache went): the heads
    // are caught up from the events before they are read or fenced.
    const version = Number((await run(DATA_VERSION))[0]?.[0]);
    staged.version = version;
    if (version !== this.#headsVersion || cache.size > this.#cachedActors) this.#stale = true;
    if (this.#stale) {
      // What this connection deferred is in the events (and marked): whoever reads heads next
      // catches them up, this batch first if it needs them.
      this.#forget();
      if (n > 0 || b.activations.length > 0) {
        for (const s of CATCH_UP) await run(s);
        staged.caughtUp = true;
      }
    }
    let unknown: string[] | undefined;
    for (let i = 0; i < n; i++) {
      const actor = groups[i]!.actor;
      if (!ids.has(actor)) (unknown ??= []).push(actor);
    }
    for (const x of b.activations) if (!ids.has(x.actor)) (unknown ??= []).push(x.actor);
    if (unknown) {
      if (ids.size + unknown.length > this.#cachedActors) {
        // Full: start again with this batch's actors (all of them: the known ones go too).
        ids.clear();
        unknown = groups.map((g) => g.actor);
        for (const x of b.activations) unknown.push(x.actor);
      }
      for (const s of localAppend.ids(unknown)) {
        for (const [actor, id] of await run(s)) ids.set(String(actor), Number(id));
      }
    }
    // Claims read and change heads: theirs are written first if deferred.
    let touched: Set<number> | undefined;
    for (const x of b.activations) {
      const id = ids.get(x.actor);
      if (id !== undefined) (touched ??= new Set()).add(id);
    }
    // Deferred heads are written (the fence below updates rows): all of them when due, else
    // those of actors claimed in this batch.
    const from = this.#deferredFrom;
    const flushAll = from !== undefined &&
      (dirty.size >= FLUSH_ACTORS || this.#top + 1 - from >= FLUSH_EVENTS ||
        performance.now() - this.#deferredAt >= FLUSH_MS);
    const flush = flushAll ? [...dirty] : touched ? [...touched].filter((id) => dirty.has(id)) : [];
    if (flush.length > 0) await runHeads(run, this.#flushStatements(flush), flush.length);
    if (flushAll) {
      await run(HEADS_CURRENT);
      staged.flushedAll = true;
    } else staged.flushed = flush;
    if (n > 0) {
      // Positions after the shard's last one, in group order.
      let next = Number((await run(localAppend.top))[0]?.[0] ?? 0);
      const firstPos = next + 1;
      // Per group: its actor's row id (-1: never activated), its first position, the position
      // before it (once known to pass: `passes`).
      const gid = new Float64Array(n);
      const first = new Float64Array(n);
      const prev: (number | null)[] = new Array(n);
      const passes = new Uint8Array(n);
      const checked: SqlValue[] = []; // flat, 5 a row: fenced here, the update only writes
      const deferred: number[] = []; // fenced here, the head kept in the cache only
      let returning: SqlValue[][] | undefined; // not cached: the update tells who passed
      let byId: Map<number, number> | undefined; // group of each of those, by row id
      for (let i = 0; i < n; i++) {
        const g = groups[i]!;
        const id = ids.get(g.actor);
        const count = g.events.length;
        first[i] = next + 1;
        gid[i] = id ?? -1;
        if (id !== undefined) {
          const newPos = count > 0 ? next + count : null;
          const head = cache.get(id);
          if (head === undefined) {
            (returning ??= []).push([id, g.epoch, g.expectedSeq, g.expectedSeq + count, newPos]);
            (byId ??= new Map()).set(id, i);
          } else if (head.epoch === g.epoch && head.seq === g.expectedSeq) {
            // Deferred while this connection is the only writer (a batch after a catch-up
            // starts deferring again), except when all are due or a claim reads it.
            if (!flushAll && !touched?.has(id)) deferred.push(id);
            else checked.push(id, g.epoch, g.expectedSeq, g.expectedSeq + count, newPos);
            prev[i] = head.pos;
            passes[i] = 1;
          }
        }
        next += count;
      }
      if (checked.length > 0) {
        const stmts: Stmt[] = [];
        localAppend.headsChecked(stmts, checked);
        await runHeads(run, stmts, checked.length / 5);
      }
      if (deferred.length > 0) {
        staged.deferred = deferred;
        if (this.#deferredFrom === undefined) {
          staged.deferredFrom = firstPos;
          await run(localAppend.deferFrom(firstPos));
        }
      }
      staged.top = next;
      if (returning) {
        for (const s of localAppend.heads(returning)) {
          for (const [id, p] of await run(s)) {
            const i = byId!.get(Number(id))!;
            prev[i] = p === null ? null : Number(p);
            passes[i] = 1;
          }
        }
      }
      const events: SqlValue[] = []; // flat: 8 values an event
      const marks: SqlValue[][] = [];
      const snapshots: SqlValue[][] = [];
      const replies: SqlValue[][] = [];
      const reminders: SqlValue[][] = [];
      const cancels: SqlValue[][] = [];
      const outbox: SqlValue[][] = [];
      let refused: string[] | undefined;
      const stagedHeads = staged.heads;
      for (let i = 0; i < n; i++) {
        const g = groups[i]!;
        if (passes[i] === 0) {
          status[i] = GROUP_REFUSED;
          (refused ??= []).push(g.actor);
          continue;
        }
        status[i] = GROUP_WRITTEN;
        const id = gid[i]!;
        let before = prev[i]!;
        let pos = first[i]!;
        let seq = g.expectedSeq;
        const evs = g.events;
        for (let k = 0; k < evs.length; k++) {
          const e = evs[k]!;
          seq++;
          events.push(pos, id, seq, before, e.type, e.version, e.data, e.at);
          if (seq % MARK_EVERY === 0) marks.push([id, seq, pos]);
          before = pos++;
        }
        stagedHeads.push(id, g.epoch, seq, before);
        const s = g.snapshot;
        if (s) snapshots.push([g.actor, s.seq, s.version, s.state]);
        for (const r of g.idempotency) {
          replies.push([g.actor, r.key, r.fingerprint, r.reply, b.now]);
        }
        for (const id of g.cancels) cancels.push([id]);
        for (const r of g.reminders) reminders.push([r.id, ...reminderRow(r)]);
        for (const m of g.outbox) outbox.push([m.id, m.topic, m.data, m.contentType, m.at]);
      }
      const stmts: Stmt[] = [];
      localAppend.events(stmts, events);
      localAppend.marks(stmts, marks);
      localAppend.snapshots(stmts, snapshots);
      localAppend.replies(stmts, replies);
      localAppend.cancels(stmts, cancels);
      localAppend.reminders(stmts, reminders);
      localAppend.outbox(stmts, outbox);
      for (const s of stmts) await run(s);
      if (refused) {
        // Why the refused were refused, read in the same transaction.
        const found = new Map<string, { epoch: number; seq: number }>();
        for (const s of headsStatements(refused)) {
          for (const [actor, epoch, seq] of await run(s)) {
            found.set(String(actor), { epoch: Number(epoch), seq: Number(seq) });
          }
        }
        for (let i = 0; i < n; i++) {
          if (status[i] !== GROUP_REFUSED) continue;
          // A cached head is the actor's (its row may lag: deferred).
          const head = cache.get(gid[i]!) ?? found.get(groups[i]!.actor);
          if (head) refusedHeads.push([i, head.epoch, head.seq]);
        }
      }
    }
    // (A release changes only the owner, which the cache does not hold.)
    for (const s of releaseStatements(b.releases)) await run(s);
    for (const s of deleteRemindersStatements(b.deletes)) await run(s);
    const act = activateStatements(b.activations, token());
    const actRows: Rows[] = [];
    for (const s of act.stmts) actRows.push(await run(s));
    // A claim won gives the actor's head (its next appends are fenced from the cache); a claim
    // lost, or made by another, is read again next time.
    for (let i = act.result; i < act.snapshots[0]; i++) {
      for (const [actor, epoch, seq, , won, id, pos] of actRows[i]!) {
        ids.set(String(actor), Number(id));
        if (Number(won) === 1) {
          staged.claimed.push(
            Number(id),
            Number(epoch),
            Number(seq),
            pos === null ? null : Number(pos),
          );
        } else staged.dropped.push(Number(id));
      }
    }
    const custom: Rows[][] = [];
    for (const c of b.custom) {
      const out: Rows[] = [];
      for (const s of c) out.push(await run(s));
      custom.push(out);
    }
    return {
      groups: { status, heads: refusedHeads },
      activations: activationOutcomes(b.activations, actRows, 0, act),
      custom,
    };
  }

  /** Runs reads. */
  read(stmts: readonly Stmt[]): Promise<Rows[]> {
    return this.#exec.read(stmts);
  }

  /** Runs writes in one transaction (pruning), retrying while the database is locked. */
  write(stmts: readonly Stmt[], timeoutMs: number): Promise<Rows[]> {
    this.#forget(); // a write of its own may change any head
    return this.#retrying(performance.now() + timeoutMs, () => this.#exec.write(stmts));
  }

  /** Releases the connection. */
  close(): void {
    this.#exec.close();
  }
}

type ActivateEvent = { seq: number; type: string; version: number; data: Uint8Array; at: number };

/** The outcome of each activation of a batch, from the rows of its statements (from `base`). */
function activationOutcomes(
  requests: readonly ActivateRequest[],
  rows: readonly Rows[],
  base: number,
  act: ReturnType<typeof activateStatements>,
): ActivateOutcome[] {
  const outcome = new Map<string, ActivateOutcome>();
  const wins = new Map<string, { epoch: number; seq: number; events: ActivateEvent[] }>();
  const snaps = new Map<string, { seq: number; version: number; state: Uint8Array }>();
  for (let i = base + act.result; i < base + act.snapshots[0]; i++) {
    for (const [actor, epoch, seq, owner, won] of rows[i]!) {
      const key = String(actor);
      if (Number(won) === 1) {
        wins.set(key, { epoch: Number(epoch), seq: Number(seq), events: [] });
      } else outcome.set(key, { won: false, owner: String(owner ?? ""), epoch: Number(epoch) });
    }
  }
  for (let i = base + act.snapshots[0]; i < base + act.snapshots[1]; i++) {
    for (const [actor, seq, version, state] of rows[i]!) {
      snaps.set(String(actor), { seq: Number(seq), version: Number(version), state: blob(state) });
    }
  }
  for (let i = base + act.events[0]; i < base + act.events[1]; i++) {
    for (const [actor, seq, type, version, data, at] of rows[i]!) {
      wins.get(String(actor))?.events.push({
        seq: Number(seq),
        type: String(type),
        version: Number(version),
        data: blob(data),
        at: Number(at),
      });
    }
  }
  for (const [actor, w] of wins) {
    w.events.sort((x, y) => x.seq - y.seq);
    const snapshot = snaps.get(actor);
    outcome.set(actor, {
      won: true,
      epoch: w.epoch,
      seq: w.seq,
      events: w.events,
      ...(snapshot ? { snapshot } : {}),
    });
  }
  return requests.map((a) => outcome.get(a.actor)!);
}

/**
 * A blob column's value as bytes in a plain `Uint8Array` of its own (a copy: the driver's
 * values may be Node `Buffer`s, whose `slice()` is a view); `null` as empty.
 */
export function bytes(v: unknown): Uint8Array {
  return new Uint8Array(blob(v));
}

/** A blob column's value as bytes (`null` as empty), a view where it can be. */
export function blob(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v === null || v === undefined) return new Uint8Array(0);
  throw new TypeError(`Expected a blob from the journal database, got ${typeof v}`);
}
