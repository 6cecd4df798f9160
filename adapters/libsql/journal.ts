/**
 * The libSQL {@link Journal}: one SQLite/libSQL database (a local `file:` in WAL mode,
 * `:memory:`, or a remote sqld/Turso server) holding every actor's log, with epoch fencing
 * and group commit.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { delay } from "../../src/util/async.ts";
import {
  type Client,
  createClient,
  type InStatement,
  type InValue,
  LibsqlError,
  type Row,
  type Transaction,
} from "@libsql/client/node";
import {
  ActorError,
  ClosedError,
  ConflictError,
  InternalError,
  UnavailableError,
} from "../../src/errors.ts";
import {
  staleEpoch,
  unexpectedSeq,
  validateAppend,
  validateClaim,
} from "../../src/journal/memory.ts";
import {
  type Append,
  type Claim,
  IDEMPOTENCY_RETENTION,
  type Journal,
  type Owned,
  type Recovered,
  type Reminder,
  type Snapshot,
  type StoredEvent,
} from "../../src/journal/types.ts";
import type { StoreBackend, StoreSource } from "../../src/store/types.ts";
import { storeOnConnection } from "./store.ts";

/**
 * The version of the journal's schema this code writes, recorded in the `troupe_meta` table
 * (`key = 'schema_version'`).
 *
 * @example
 * ```ts
 * import { SCHEMA_VERSION } from "@troupe/troupe/libsql";
 * console.log(SCHEMA_VERSION); // 2
 * ```
 */
export const SCHEMA_VERSION = 2;

/**
 * The longest a local database call waits for a lock synchronously (SQLite's busy timeout),
 * in ms. The libSQL client runs statements on the calling thread, so SQLite's wait for a
 * lock blocks the event loop: the journal keeps each wait this short and retries
 * asynchronously, with backoff, until the call's `busyTimeoutMs` has passed.
 */
const BUSY_SLICE_MS = 20;

/** The longest pause between two tries of a call on a locked database, in ms. */
const BUSY_PAUSE_MAX_MS = 50;

/**
 * Options of {@link libsqlJournal}.
 *
 * @example
 * ```ts
 * import type { LibsqlJournalOptions } from "@troupe/troupe/libsql";
 * const options: LibsqlJournalOptions = { url: "file:./data/troupe.db", busyTimeoutMs: 2_000 };
 * ```
 */
export interface LibsqlJournalOptions {
  /**
   * The database: `file:path` (a local SQLite file, switched to WAL mode), `:memory:` (gone on
   * close), or a remote server `libsql://…`, `http(s)://…`, `ws(s)://…` (sqld, Turso).
   */
  readonly url: string;
  /** Token for a remote server. */
  readonly authToken?: string;
  /**
   * How long a call keeps trying while the database is locked by another connection or
   * process (or a server says it is busy) before it fails with `unavailable`; an append
   * counts from when it was called. The wait blocks the thread at most 20 ms at a time
   * (SQLite's own busy wait); in between, the journal pauses asynchronously and tries again,
   * so timers (lease heartbeats) keep running while another process holds the lock, even a
   * paused one.
   * @default {5000}
   */
  readonly busyTimeoutMs?: number;
  /**
   * Local files only: SQLite's `synchronous` setting in WAL mode. `"full"` fsyncs the WAL on
   * every commit: an acknowledged append survives a process crash and a power loss or OS
   * crash. `"normal"` fsyncs only at checkpoints: an acknowledged append survives a process
   * crash (`kill -9`), but the last commits before a power loss or OS crash may be lost
   * (the database stays consistent).
   * @default {"full"}
   */
  readonly synchronous?: "full" | "normal";
  /**
   * At most this many appends share one transaction (group commit).
   * @default {2000}
   */
  readonly maxBatch?: number;
  /**
   * How long opening (switching to WAL, creating or migrating the schema) keeps retrying
   * while the database is busy, e.g. when several processes start at once.
   * @default {30000}
   */
  readonly openTimeoutMs?: number;
  /**
   * How many idempotency records are kept per actor, and for how long.
   * @default {IDEMPOTENCY_RETENTION}
   */
  readonly retention?: { readonly maxAgeMs: number; readonly maxPerActor: number };
  /**
   * How often idempotency records are pruned (after a commit, at most once per interval).
   * @default {60000}
   */
  readonly pruneIntervalMs?: number;
}

/**
 * A {@link Journal} on libSQL, with a few extras.
 *
 * @example
 * ```ts
 * import { libsqlJournal } from "@troupe/troupe/libsql";
 * await using journal = libsqlJournal({ url: ":memory:" });
 * await journal.pruneIdempotency();
 * ```
 */
export interface LibsqlJournal extends Journal, StoreSource {
  /** The URL it was opened with, without its query string. */
  readonly url: string;
  /**
   * Prunes idempotency records now: drops those older than `retention.maxAgeMs` (before
   * `now`), and keeps at most `retention.maxPerActor` for each actor that stored one since
   * the last prune. Runs by itself every `pruneIntervalMs`.
   */
  pruneIdempotency(now?: number): Promise<void>;
  /**
   * A record store backend on this journal's database and connection (what
   * `system.store()` uses when this is the system's journal). Closing it leaves the journal
   * open; closing the journal closes it.
   */
  openStore(): StoreBackend;
  /** Same as {@link Journal.close}. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Opens a journal on a libSQL database. The database is opened, switched to WAL mode and
 * given its schema on first use (retrying while it is busy); the schema version is recorded
 * in `troupe_meta`.
 *
 * Schema: `events(actor, seq, type, version, data, at)` keyed by `(actor, seq)`,
 * `snapshots(actor, seq, version, state)`, `activations(actor, epoch, seq, owner)` (the
 * epoch, head and owning node of each actor: fencing checks read one row), `idempotency(actor, key, reply, at)`,
 * `reminders(id, actor, handler, data, due)`, `troupe_meta(key, value)`.
 *
 * Appends are group-committed: the appends that arrive while a commit runs share the next
 * transaction (`BEGIN IMMEDIATE`, at most `maxBatch` appends, one per actor; a second append
 * of the same actor waits for the next one). Each append is checked in SQL against its
 * actor's epoch and head, and written only if it passes; each caller is settled on its own
 * after the commit. A failed check rejects with `ConflictError` (code `conflict`).
 *
 * Idempotency records are kept at most `retention.maxPerActor` per actor and are dropped
 * after `retention.maxAgeMs`; pruning runs at most every `pruneIntervalMs`, so a record may
 * outlive its age (and an actor may briefly exceed the cap) until then.
 *
 * A locked database (another connection or process holds the write lock) is waited for
 * without blocking the event loop for long: SQLite waits at most 20 ms at a time, and the
 * call is tried again after short asynchronous pauses, until `busyTimeoutMs` has passed.
 *
 * Errors: a locked database (`busyTimeoutMs` passed) and a read-only database reject with
 * `UnavailableError` (code `unavailable`, the libSQL error as `cause`), saying what was
 * attempted on which database; the journal stays usable. Unexpected database errors reject
 * with `InternalError` (code `internal`); calls after `close()` with `ClosedError`.
 *
 * @example
 * ```ts
 * import { isOwned } from "@troupe/troupe";
 * import { libsqlJournal } from "@troupe/troupe/libsql";
 * const journal = libsqlJournal({ url: "file:./data/troupe.db" });
 * const rec = await journal.activate("account/alice", { node: "n1" });
 * if (isOwned(rec)) throw new Error(`owned by ${rec.owner}`);
 * const { epoch, seq } = rec;
 * await journal.append({
 *   actor: "account/alice",
 *   epoch,
 *   expectedSeq: seq,
 *   events: [{ type: "deposited", version: 1, data: new Uint8Array([1]), at: Date.now() }],
 * });
 * await journal.close();
 * ```
 */
export function libsqlJournal(options: LibsqlJournalOptions): LibsqlJournal {
  return new LibsqlJournalImpl(options);
}

const DDL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS troupe_meta (key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS events (actor TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, version INTEGER NOT NULL, data BLOB NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (actor, seq)) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS snapshots (actor TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    version INTEGER NOT NULL, state BLOB NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS activations (actor TEXT PRIMARY KEY, epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL, owner TEXT) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS idempotency (actor TEXT NOT NULL, key TEXT NOT NULL,
    reply BLOB NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (actor, key)) WITHOUT ROWID`,
  `CREATE INDEX IF NOT EXISTS idempotency_at ON idempotency (at)`,
  `CREATE TABLE IF NOT EXISTS reminders (id TEXT PRIMARY KEY, actor TEXT NOT NULL,
    handler TEXT NOT NULL, data BLOB NOT NULL, due INTEGER NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS reminders_due ON reminders (due, id)`,
];

/** Rows per `(VALUES …)` sub-select: SQLite refuses 1000 or more there. */
const VALUES_ROWS = 500;

interface Pending {
  readonly append: Append;
  /** When it stops waiting for a locked database (`performance.now()` clock). */
  readonly deadline: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

class LibsqlJournalImpl implements LibsqlJournal {
  readonly url: string;
  readonly #options: LibsqlJournalOptions;
  readonly #local: boolean;
  readonly #memory: boolean;
  readonly #busyTimeoutMs: number;
  readonly #busySliceMs: number;
  readonly #maxBatch: number;
  readonly #retention: { readonly maxAgeMs: number; readonly maxPerActor: number };
  readonly #pruneIntervalMs: number;
  #client: Client | undefined;
  #opening: Promise<Client> | undefined;
  #needPragmas = false;
  #reconnect = false;
  #closed = false;
  /** Set once close() has released the database: nothing may open it again. */
  #released = false;
  #closing: Promise<void> | undefined;
  #queue: Pending[] = [];
  #flushing = false;
  #idle: (() => void)[] = [];
  #touched = new Set<string>();
  #lastPrune = Date.now();

  constructor(options: LibsqlJournalOptions) {
    if (typeof options?.url !== "string" || options.url === "") {
      throw new TypeError('libsqlJournal() needs a url, e.g. "file:./data/troupe.db"');
    }
    this.#options = options;
    this.url = options.url.replace(/\?.*$/, "");
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(options.url)?.[1]?.toLowerCase();
    this.#local = options.url === ":memory:" || scheme === "file";
    this.#memory = options.url === ":memory:" || /^file::memory:/.test(options.url);
    this.#busyTimeoutMs = Math.max(0, options.busyTimeoutMs ?? 5000);
    this.#busySliceMs = Math.floor(Math.min(BUSY_SLICE_MS, this.#busyTimeoutMs));
    this.#maxBatch = Math.max(1, options.maxBatch ?? 2000);
    this.#retention = options.retention ?? IDEMPOTENCY_RETENTION;
    this.#pruneIntervalMs = options.pruneIntervalMs ?? 60_000;
  }

  // ---- opening -------------------------------------------------------------------------

  async #ready(what: string, draining = false): Promise<Client> {
    if (this.#released || (this.#closed && !draining)) {
      throw new ClosedError(`Cannot ${what}: the journal ${this.url} is closed`);
    }
    if (this.#client) {
      if (this.#reconnect) {
        // A statement that failed with SQLITE_BUSY can stay active on its connection and
        // make every later COMMIT fail ("SQL statements in progress"): start afresh.
        this.#reconnect = false;
        await this.#client.reconnect();
        this.#needPragmas = true;
      }
      if (this.#needPragmas) await this.#pragmas(this.#client);
      return this.#client;
    }
    this.#opening ??= this.#open().then(
      (client) => {
        this.#client = client;
        return client;
      },
      (err) => {
        this.#opening = undefined; // the next call tries again
        throw err;
      },
    );
    return await this.#opening;
  }

  async #open(): Promise<Client> {
    const deadline = Date.now() + (this.#options.openTimeoutMs ?? 30_000);
    for (let attempt = 0;; attempt++) {
      let client: Client | undefined;
      try {
        client = createClient({
          url: this.#options.url,
          intMode: "number",
          ...(this.#options.authToken === undefined ? {} : { authToken: this.#options.authToken }),
          // One connection: the pragmas below are per connection, and commits are serial.
          // SQLite's busy timeout, for every connection the client opens: see BUSY_SLICE_MS.
          ...(this.#local ? { concurrency: 1, timeout: this.#busySliceMs } : {}),
        });
        await this.#pragmas(client, true);
        await migrate(client);
        return client;
      } catch (err) {
        client?.close();
        if (!isBusy(err) || Date.now() >= deadline) {
          throw this.#error(err, "open the journal database", "open");
        }
        const backoff = Math.min(1000, 10 * 2 ** attempt) * (0.5 + Math.random());
        await delay(Math.min(backoff, Math.max(0, deadline - Date.now())));
      }
    }
  }

  async #pragmas(client: Client, first = false): Promise<void> {
    this.#needPragmas = false;
    if (!this.#local) return;
    await client.execute(`PRAGMA busy_timeout = ${this.#busySliceMs}`);
    if (this.#memory) return;
    if (first) {
      const rs = await client.execute("PRAGMA journal_mode = WAL");
      const mode = String(rs.rows[0]?.[0] ?? "");
      if (mode.toLowerCase() !== "wal") {
        throw new UnavailableError(
          `Cannot open the journal database ${this.url}: it cannot use WAL mode (mode is "${mode}")`,
        );
      }
    }
    await client.execute(`PRAGMA synchronous = ${this.#options.synchronous ?? "full"}`);
  }

  // ---- errors --------------------------------------------------------------------------

  /** Maps a database error to a typed error that says what was attempted, on which database. */
  #error(err: unknown, what: string, op: "open" | "other" = "other"): ActorError {
    if (err instanceof ActorError) return err;
    const where = `in ${this.url}`;
    if (err instanceof LibsqlError) {
      const code = err.extendedCode ?? err.code;
      if (err.code === "CLIENT_CLOSED") {
        return new ClosedError(`Cannot ${what}: the journal ${this.url} is closed`, { cause: err });
      }
      if (isBusy(err)) {
        return new UnavailableError(
          `Cannot ${what} ${where}: the database is locked by another connection or process` +
            (op === "open" ? "" : ` (waited ${this.#busyTimeoutMs} ms)`),
          { cause: err },
        );
      }
      if (code.startsWith("SQLITE_READONLY") || err.code.startsWith("SQLITE_READONLY")) {
        return new UnavailableError(`Cannot ${what} ${where}: the database is read-only`, {
          cause: err,
        });
      }
      if (code.startsWith("SQLITE_CANTOPEN") || err.code.startsWith("SQLITE_CANTOPEN")) {
        return new UnavailableError(`Cannot ${what} ${where}: the database file cannot be opened`, {
          cause: err,
        });
      }
      if (err.code.startsWith("SQLITE_CONSTRAINT")) {
        return new ConflictError(`Cannot ${what} ${where}: ${err.message}`, { cause: err });
      }
      return new InternalError(`Cannot ${what} ${where}: ${err.message}`, { cause: err });
    }
    return new InternalError(`Cannot ${what} ${where}: ${String(err)}`, { cause: err });
  }

  /** Notes what a failed database call leaves behind, for the next call to set right. */
  #failed(err: unknown): void {
    if (!(err instanceof LibsqlError)) return;
    this.#needPragmas = true; // the pool may have replaced a broken connection
    // A statement that failed with SQLITE_BUSY stays active on its connection: it keeps a
    // read snapshot (so SQLite gives up on the next lock at once, without its busy wait) and
    // makes every later COMMIT fail ("SQL statements in progress"). Start afresh.
    if (isBusy(err) && this.#local && !this.#memory) this.#reconnect = true;
  }

  /** Whether a failed call may simply be tried again: nothing of it was done. */
  #retryable(err: unknown): boolean {
    // Busy: the client rolled back whatever the statement or batch had begun. Closed before
    // close() released the database: a reconnect closed the connection before the call
    // used it.
    return isBusy(err) ||
      (err instanceof LibsqlError && err.code === "CLIENT_CLOSED" && !this.#released);
  }

  /**
   * Runs `fn` on the client; while the database is locked (or the connection was being
   * replaced), runs it again after a short pause, until `deadline`, then throws the last
   * error. SQLite waits for a lock at most {@link BUSY_SLICE_MS} at a time, blocking the
   * thread; the pauses in between let the event loop run (timers, heartbeats, I/O).
   */
  async #attempt<T>(
    what: string,
    deadline: number,
    fn: (client: Client) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 0;; attempt++) {
      try {
        return await fn(await this.#ready(what, true));
      } catch (err) {
        this.#failed(err);
        if (!this.#retryable(err) || performance.now() >= deadline) throw err;
      }
      const pause = Math.min(BUSY_PAUSE_MAX_MS, 2 ** attempt) * (0.5 + Math.random());
      await delay(Math.min(pause, Math.max(0, deadline - performance.now())));
    }
  }

  async #run<T>(what: string, fn: (client: Client) => Promise<T>): Promise<T> {
    try {
      return await this.#attempt(what, performance.now() + this.#busyTimeoutMs, fn);
    } catch (err) {
      throw this.#error(err, what);
    }
  }

  openStore(): StoreBackend {
    return storeOnConnection({ url: this.url, run: (what, fn) => this.#run(what, fn) });
  }

  // ---- reads and small writes ----------------------------------------------------------

  activate(actor: string, claim?: Claim): Promise<Recovered | Owned> {
    try {
      validateClaim(actor, claim);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#run(`activate "${actor}"`, async (client) => {
      const node = claim?.node ?? null;
      // One write transaction: the owner check, the epoch bump and the reads. The reads
      // return rows only when the activation happened (the owner is then `node`, or none
      // without a claim).
      const mine = "(SELECT owner FROM activations WHERE actor = ?) IS ?";
      const [, head, snap, events] = await client.batch([
        {
          sql: `INSERT INTO activations (actor, epoch, seq, owner)
                VALUES (?, 1, (SELECT coalesce(max(seq), 0) FROM events WHERE actor = ?), ?)
                ON CONFLICT (actor) DO UPDATE SET epoch = epoch + 1, owner = excluded.owner
                WHERE ? IS NULL OR owner IS NULL OR owner = ? OR owner = ?`,
          args: [actor, actor, node, node, node, claim?.takeOver ?? null],
        },
        { sql: "SELECT epoch, seq, owner FROM activations WHERE actor = ?", args: [actor] },
        {
          sql: `SELECT seq, version, state FROM snapshots WHERE actor = ? AND ${mine}`,
          args: [actor, actor, node],
        },
        {
          sql: `SELECT seq, type, version, data, at FROM events
                WHERE actor = ? AND seq > coalesce((SELECT seq FROM snapshots WHERE actor = ?), 0)
                AND ${mine} ORDER BY seq`,
          args: [actor, actor, actor, node],
        },
      ], "write");
      const h = head!.rows[0]!;
      const owner = h.owner === null || h.owner === undefined ? null : String(h.owner);
      if (owner !== node) return { owner: owner ?? "", epoch: Number(h.epoch) };
      const s = snap!.rows[0];
      const snapshot: Snapshot | undefined = s
        ? { seq: Number(s.seq), version: Number(s.version), state: bytes(s.state) }
        : undefined;
      return {
        epoch: Number(h.epoch),
        seq: Number(h.seq),
        events: events!.rows.map(toEvent),
        ...(snapshot ? { snapshot } : {}),
      };
    });
  }

  release(actor: string, node: string, epoch: number): Promise<void> {
    return this.#run(`release "${actor}"`, async (client) => {
      await client.execute({
        sql: "UPDATE activations SET owner = NULL WHERE actor = ? AND owner = ? AND epoch = ?",
        args: [actor, node, epoch],
      });
    });
  }

  owner(actor: string): Promise<Owned | undefined> {
    return this.#run(`read the owner of "${actor}"`, async (client) => {
      const rs = await client.execute({
        sql: "SELECT owner, epoch FROM activations WHERE actor = ? AND owner IS NOT NULL",
        args: [actor],
      });
      const r = rs.rows[0];
      return r ? { owner: String(r.owner), epoch: Number(r.epoch) } : undefined;
    });
  }

  read(actor: string, from: number, limit: number): Promise<StoredEvent[]> {
    return this.#run(`read "${actor}"`, async (client) => {
      const rs = await client.execute({
        sql: `SELECT seq, type, version, data, at FROM events
              WHERE actor = ? AND seq >= ? ORDER BY seq LIMIT ?`,
        args: [actor, from, Math.max(0, limit)],
      });
      return rs.rows.map(toEvent);
    });
  }

  reply(actor: string, key: string): Promise<Uint8Array | undefined> {
    return this.#run(`read a reply of "${actor}"`, async (client) => {
      const rs = await client.execute({
        sql: "SELECT reply FROM idempotency WHERE actor = ? AND key = ?",
        args: [actor, key],
      });
      const row = rs.rows[0];
      return row ? bytes(row.reply) : undefined;
    });
  }

  dueReminders(now: number, limit: number): Promise<Reminder[]> {
    return this.#run("read due reminders", async (client) => {
      const rs = await client.execute({
        sql: `SELECT id, actor, handler, data, due FROM reminders
              WHERE due <= ? ORDER BY due, id LIMIT ?`,
        args: [now, Math.max(0, limit)],
      });
      return rs.rows.map((r) => ({
        id: String(r.id),
        actor: String(r.actor),
        handler: String(r.handler),
        data: bytes(r.data),
        due: Number(r.due),
      }));
    });
  }

  nextReminder(): Promise<number | undefined> {
    return this.#run("read the next reminder", async (client) => {
      const rs = await client.execute("SELECT min(due) AS due FROM reminders");
      const due = rs.rows[0]?.due;
      return due === null || due === undefined ? undefined : Number(due);
    });
  }

  deleteReminder(id: string): Promise<void> {
    return this.#run(`delete reminder "${id}"`, async (client) => {
      await client.execute({ sql: "DELETE FROM reminders WHERE id = ?", args: [id] });
    });
  }

  pruneIdempotency(now = Date.now()): Promise<void> {
    return this.#run("prune idempotency records", (client) => this.#prune(client, now));
  }

  async #prune(client: Client, now: number): Promise<void> {
    const touched = [...this.#touched];
    this.#touched.clear();
    this.#lastPrune = Date.now();
    const stmts: InStatement[] = [{
      sql: "DELETE FROM idempotency WHERE at < ?",
      args: [now - this.#retention.maxAgeMs],
    }];
    for (let i = 0; i < touched.length; i += 1000) {
      stmts.push({
        sql: `DELETE FROM idempotency WHERE (actor, key) IN (
                SELECT actor, key FROM (
                  SELECT actor, key,
                    row_number() OVER (PARTITION BY actor ORDER BY at DESC, key DESC) AS n
                  FROM idempotency WHERE actor IN (SELECT value FROM json_each(?))
                ) WHERE n > ?)`,
        args: [JSON.stringify(touched.slice(i, i + 1000)), this.#retention.maxPerActor],
      });
    }
    await client.batch(stmts, "write");
  }

  // ---- appends (group commit) ----------------------------------------------------------

  append(append: Append): Promise<void> {
    try {
      validateAppend(append);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#closed) {
      return Promise.reject(
        new ClosedError(`Cannot append to "${append.actor}": the journal ${this.url} is closed`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({
        append,
        deadline: performance.now() + this.#busyTimeoutMs,
        resolve,
        reject,
      });
      if (!this.#flushing) {
        this.#flushing = true;
        // Let every append of this turn of the event loop join the first commit.
        setImmediate(() => void this.#flush());
      }
    });
  }

  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        await this.#commit(this.#take());
        if (
          this.#client && !this.#closed && (this.#touched.size >= 10_000 ||
            Date.now() - this.#lastPrune >= this.#pruneIntervalMs)
        ) {
          await this.#prune(this.#client, Date.now()).catch((err) => {
            this.#failed(err); // pruning is best effort: the next interval tries again
          });
        }
        // The callers just settled append again in their continuations (microtasks): wait
        // for them so they join the next commit together.
        if (this.#queue.length > 0) await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.#flushing = false;
      for (const wake of this.#idle.splice(0)) wake();
    }
  }

  /** The next batch: queue order, at most one append per actor, at most `maxBatch`. */
  #take(): Pending[] {
    const queue = this.#queue;
    if (queue.length === 1) {
      this.#queue = [];
      return queue;
    }
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    const actors = new Set<string>();
    for (const p of queue) {
      if (batch.length < this.#maxBatch && !actors.has(p.append.actor)) {
        actors.add(p.append.actor);
        batch.push(p);
      } else rest.push(p);
    }
    this.#queue = rest;
    return batch;
  }

  /**
   * Commits one batch and settles each of its callers; never throws.
   *
   * The common case takes the fast path: plain multi-row inserts and one head update that
   * makes the whole transaction fail if any append's epoch or expected seq does not match
   * (see {@link fastStatements}). Only when that fails with a constraint error does the batch
   * run again on the checked path, which writes each append only if it passes its checks and
   * tells which ones did; a constraint failure there (a row the checks did not foresee, such
   * as an existing event) is isolated by committing each append on its own.
   */
  async #commit(batch: Pending[], checked = false): Promise<void> {
    const what = batch.length === 1
      ? `append to "${batch[0]!.append.actor}"`
      : `append to ${batch.length} actors`;
    const appends = batch.map((p) => p.append);
    // Each append waits for a locked database until its own deadline: the batch until the
    // earliest (it is tried at least once).
    let deadline = Infinity;
    for (const p of batch) deadline = Math.min(deadline, p.deadline);
    let client: Client | undefined;
    let results;
    try {
      results = await this.#attempt(what, deadline, (c) => {
        client = c;
        const now = Date.now();
        return c.batch(
          checked ? checkedStatements(appends, now) : fastStatements(appends, now),
          "write",
        );
      });
    } catch (err) {
      const mapped = this.#error(err, what);
      if (mapped instanceof ConflictError) {
        // Some append failed its check, or a constraint: nothing was written. Find out which.
        if (!checked) return await this.#commit(batch, true);
        if (batch.length > 1) {
          for (const p of batch) await this.#commit([p], true);
          return;
        }
      }
      for (const p of batch) {
        p.reject(batch.length === 1 ? mapped : this.#error(err, `append to "${p.append.actor}"`));
      }
      return;
    }
    if (!checked) {
      // The transaction committed, so every append passed its checks.
      for (const p of batch) {
        if (p.append.idempotency) this.#touched.add(p.append.actor);
        p.resolve();
      }
      return;
    }
    // The last statement: the UPDATE … RETURNING of the appends that passed their checks
    // (and were written).
    const written = new Set<string>();
    for (const r of results[results.length - 1]!.rows) written.add(String(r.actor));
    const failed: Pending[] = [];
    for (const p of batch) {
      if (written.has(p.append.actor)) {
        if (p.append.idempotency) this.#touched.add(p.append.actor);
        p.resolve();
      } else failed.push(p);
    }
    if (failed.length > 0) await this.#rejectFailed(client!, failed);
  }

  /** Rejects appends that failed their checks, saying why (stale epoch or unexpected seq). */
  async #rejectFailed(client: Client, failed: Pending[]): Promise<void> {
    const heads = new Map<string, { epoch: number; seq: number }>();
    try {
      const rs = await client.execute({
        sql: `SELECT actor, epoch, seq FROM activations
              WHERE actor IN (SELECT value FROM json_each(?))`,
        args: [JSON.stringify(failed.map((p) => p.append.actor))],
      });
      for (const r of rs.rows) {
        heads.set(String(r.actor), { epoch: Number(r.epoch), seq: Number(r.seq) });
      }
    } catch {
      // the messages get less precise, the outcome is the same
    }
    for (const p of failed) {
      const a = p.append;
      const head = heads.get(a.actor);
      p.reject(
        !head || head.epoch !== a.epoch
          ? staleEpoch(a, head?.epoch ?? 0)
          : head.seq === a.expectedSeq
          // Read after the commit: another writer may have moved on since.
          ? new ConflictError(
            `Cannot append to "${a.actor}" at epoch ${a.epoch}: expected seq ${a.expectedSeq} was not the head of the log`,
          )
          : unexpectedSeq(a, head.seq),
      );
    }
  }

  // ---- closing -------------------------------------------------------------------------

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      if (this.#flushing) await new Promise<void>((resolve) => this.#idle.push(resolve));
      const client = this.#client ?? await this.#opening?.catch(() => undefined);
      this.#client = undefined;
      this.#released = true;
      client?.close();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Most rows of one multi-row `INSERT … VALUES`: SQLite binds at most 32766 parameters. */
const MAX_PARAMS = 32766;

/**
 * The statements of one group commit on the fast path: plain multi-row inserts of every
 * append's rows (as many rows per statement as SQLite's parameter limit allows), then one
 * head update per batch that sets the new head of each actor whose epoch and head match the
 * append, and a NULL (refused: `seq` is NOT NULL) for any other, failing the whole
 * transaction. A last statement fails it too (NOT NULL again) when fewer heads were updated
 * than there are appends, i.e. an actor was never activated. So the transaction commits only
 * if every append passes its checks, and then each was written exactly as the checked path
 * would have written it.
 */
function fastStatements(appends: readonly Append[], now: number): InStatement[] {
  const stmts: InStatement[] = [];
  const inserts = (prefix: string, cols: number, suffix = "") => {
    const max = Math.floor(MAX_PARAMS / cols);
    let args: InValue[] = [];
    const flush = () => {
      if (args.length === 0) return;
      const row = `(?${",?".repeat(cols - 1)})`;
      const rows = args.length / cols;
      stmts.push({ sql: `${prefix} VALUES ${`${row},`.repeat(rows - 1)}${row}${suffix}`, args });
      args = [];
    };
    return {
      add(...values: InValue[]) {
        for (const v of values) args.push(v);
        if (args.length >= max * cols) flush();
      },
      flush,
    };
  };
  const events = inserts("INSERT INTO events (actor, seq, type, version, data, at)", 6);
  const heads: (string | number)[][] = [];
  let snapshots = false, replies = false, reminders = false;
  for (const a of appends) {
    let seq = a.expectedSeq;
    for (const e of a.events) events.add(a.actor, ++seq, e.type, e.version, e.data, e.at);
    if (a.snapshot) snapshots = true;
    if (a.idempotency) replies = true;
    if (a.reminders?.length) reminders = true;
    heads.push([a.actor, a.epoch, a.expectedSeq, seq]);
  }
  events.flush();
  if (snapshots) {
    const s = inserts(
      "INSERT INTO snapshots (actor, seq, version, state)",
      4,
      ` ON CONFLICT (actor) DO UPDATE SET seq = excluded.seq, version = excluded.version,
        state = excluded.state`,
    );
    for (const a of appends) {
      if (a.snapshot) s.add(a.actor, a.snapshot.seq, a.snapshot.version, a.snapshot.state);
    }
    s.flush();
  }
  if (replies) {
    const r = inserts("INSERT OR REPLACE INTO idempotency (actor, key, reply, at)", 4);
    for (const a of appends) {
      if (a.idempotency) r.add(a.actor, a.idempotency.key, a.idempotency.reply, now);
    }
    r.flush();
  }
  if (reminders) {
    const r = inserts("INSERT OR REPLACE INTO reminders (id, actor, handler, data, due)", 5);
    for (const a of appends) {
      for (const m of a.reminders ?? []) r.add(m.id, m.actor, m.handler, m.data, m.due);
    }
    r.flush();
  }
  stmts.push({
    sql: `UPDATE activations SET seq = CASE WHEN activations.epoch = j.value ->> 1
            AND activations.seq = j.value ->> 2 THEN j.value ->> 3 END
          FROM json_each(?) AS j WHERE activations.actor = j.value ->> 0`,
    args: [JSON.stringify(heads)],
  });
  // changes(): the rows the head update just changed.
  stmts.push({
    sql: "INSERT INTO activations (actor, epoch, seq) SELECT NULL, 0, 0 WHERE changes() <> ?",
    args: [appends.length],
  });
  return stmts;
}

/**
 * The statements of one group commit on the checked path. Every write is conditioned, in
 * SQL, on the actor's `activations` row still having the append's epoch and expected seq;
 * the head updates come last so that all conditions see the heads as they were before the
 * batch, and return the actors whose appends passed (and were written).
 */
function checkedStatements(appends: readonly Append[], now: number): InStatement[] {
  const stmts: InStatement[] = [];
  const events: InValue[][] = [];
  const snapshots: InValue[][] = [];
  const replies: InValue[][] = [];
  const reminders: InValue[][] = [];
  const heads: (string | number)[][] = [];
  for (const a of appends) {
    let seq = a.expectedSeq;
    for (const e of a.events) {
      events.push([a.actor, ++seq, e.type, e.version, e.data, e.at, a.epoch, a.expectedSeq]);
    }
    if (a.snapshot) {
      const s = a.snapshot;
      snapshots.push([a.actor, s.seq, s.version, s.state, a.epoch, a.expectedSeq]);
    }
    if (a.idempotency) {
      const i = a.idempotency;
      replies.push([a.actor, i.key, i.reply, now, a.epoch, a.expectedSeq]);
    }
    for (const r of a.reminders ?? []) {
      reminders.push([r.id, r.actor, r.handler, r.data, r.due, a.actor, a.epoch, a.expectedSeq]);
    }
    heads.push([a.actor, a.epoch, a.expectedSeq, seq]);
  }
  // v.column(n-1), v.column(n): the append's epoch and expected seq; v.column(n-2) for
  // reminders: the appending actor.
  const guarded = (insert: string, cols: number, rows: InValue[][], actorCol = 1) => {
    const n = cols + 2 + (actorCol === 1 ? 0 : 1);
    const select = Array.from({ length: cols }, (_, i) => `v.column${i + 1}`).join(", ");
    const row = `(?${",?".repeat(n - 1)})`;
    for (let i = 0; i < rows.length; i += VALUES_ROWS) {
      const chunk = rows.slice(i, i + VALUES_ROWS);
      stmts.push({
        sql: `${
          insert.replace(
            "$SELECT",
            `SELECT ${select} FROM (VALUES ${`${row},`.repeat(chunk.length - 1)}${row}) AS v
          CROSS JOIN activations AS a ON a.actor = v.column${actorCol}
          AND a.epoch = v.column${n - 1} AND a.seq = v.column${n} WHERE true`,
          )
        }`,
        args: chunk.flat(),
      });
    }
  };
  guarded("INSERT INTO events (actor, seq, type, version, data, at) $SELECT", 6, events);
  guarded(
    `INSERT INTO snapshots (actor, seq, version, state) $SELECT ON CONFLICT (actor)
     DO UPDATE SET seq = excluded.seq, version = excluded.version, state = excluded.state`,
    4,
    snapshots,
  );
  guarded("INSERT OR REPLACE INTO idempotency (actor, key, reply, at) $SELECT", 4, replies);
  guarded(
    "INSERT OR REPLACE INTO reminders (id, actor, handler, data, due) $SELECT",
    5,
    reminders,
    6,
  );
  // One JSON parameter is cheaper to bind than four per row.
  stmts.push({
    sql: `UPDATE activations SET seq = j.value ->> 3 FROM json_each(?) AS j
          WHERE activations.actor = j.value ->> 0 AND activations.epoch = j.value ->> 1
          AND activations.seq = j.value ->> 2 RETURNING activations.actor AS actor`,
    args: [JSON.stringify(heads)],
  });
  return stmts;
}

/**
 * Creates or migrates the schema (idempotent; safe when several processes do it at once: the
 * version is read again inside the write transaction that migrates).
 *
 * Versions: 1 → 2 adds `activations.owner` (the node owning each actor, for claims).
 */
async function migrate(client: Client): Promise<void> {
  if (await schemaVersion(client) === SCHEMA_VERSION) return;
  const tx = await client.transaction("write");
  try {
    const version = await schemaVersion(tx);
    if (version > SCHEMA_VERSION) {
      throw new UnavailableError(
        `The journal database has schema version ${version}, newer than this code supports (${SCHEMA_VERSION})`,
      );
    }
    if (version < SCHEMA_VERSION) {
      if (version >= 1) {
        const cols = await tx.execute("SELECT name FROM pragma_table_info('activations')");
        if (!cols.rows.some((r) => r.name === "owner")) {
          await tx.execute("ALTER TABLE activations ADD COLUMN owner TEXT");
        }
      }
      for (const ddl of DDL) await tx.execute(ddl);
      await tx.execute({
        sql: `INSERT INTO troupe_meta (key, value) VALUES ('schema_version', ?)
              ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value < excluded.value`,
        args: [SCHEMA_VERSION],
      });
    }
    await tx.commit();
  } finally {
    tx.close();
  }
}

/** The schema version recorded in the database (0: none yet). */
async function schemaVersion(db: Client | Transaction): Promise<number> {
  const found = await db.execute(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'troupe_meta'",
  );
  if (found.rows.length === 0) return 0;
  const rs = await db.execute("SELECT value FROM troupe_meta WHERE key = 'schema_version'");
  return Number(rs.rows[0]?.value ?? 0);
}

function isBusy(err: unknown): boolean {
  if (!(err instanceof LibsqlError)) return false;
  const code = err.extendedCode ?? err.code;
  return code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") ||
    err.code.startsWith("SQLITE_BUSY") || err.code.startsWith("SQLITE_LOCKED");
}

/** A blob column's value as bytes (a copy); `null` as empty. */
export function bytes(v: unknown): Uint8Array {
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
  if (v === null || v === undefined) return new Uint8Array(0);
  throw new InternalError(`Expected a blob from the journal database, got ${typeof v}`);
}

function toEvent(r: Row): StoredEvent {
  return {
    seq: Number(r.seq),
    type: String(r.type),
    version: Number(r.version),
    data: bytes(r.data),
    at: Number(r.at),
  };
}
