/**
 * The libSQL {@link Journal}: actors' logs in one or more SQLite/libSQL databases (local
 * `file:`s in WAL mode, `:memory:`, or remote sqld/Turso servers), with epoch fencing, group
 * commit pipelined off the main thread, and shards.
 *
 * @module
 */

import { ClosedError } from "../../mod.ts";
import {
  type Append,
  type Claim,
  type CommittedEvent,
  IDEMPOTENCY_RETENTION,
  type Journal,
  type OutboxMessage,
  type Owned,
  type Recovered,
  type Reminder,
  type StoreBackend,
  type StoredEvent,
  type StoredReply,
  type StoreSource,
  systemClock,
  validateAppend,
  validateClaim,
  validateFeedRead,
} from "../../spi.ts";
import { connect } from "./_connection.ts";
import { bytes } from "./_engine.ts";
import { Shard } from "./_shard.ts";
import {
  committedStatement,
  deleteOutboxStatements,
  outboxStatement,
  pruneStatements,
  readStatement,
  REMINDER_COLUMNS,
  reminderOf,
  rescheduleStatement,
  SCHEMA_VERSION as VERSION,
} from "./_sql.ts";
import { storeOnShard } from "./store.ts";

/**
 * The version of the journal's schema this code writes, recorded in the `troupe_meta` table
 * (`key = 'schema_version'`). Older versions are migrated when opened; a newer one is
 * refused.
 *
 * @example
 * ```ts
 * import { SCHEMA_VERSION } from "@troupe/troupe/libsql";
 * console.log(SCHEMA_VERSION); // 4
 * ```
 */
export const SCHEMA_VERSION: number = VERSION;

/**
 * Options of {@link libsqlJournal}: one database (`url`) or several (`shards`).
 *
 * @example
 * ```ts
 * import type { LibsqlJournalOptions } from "@troupe/troupe/libsql";
 * const one: LibsqlJournalOptions = { url: "file:./data/troupe.db", busyTimeoutMs: 2_000 };
 * const three: LibsqlJournalOptions = {
 *   shards: ["file:./data/s0.db", "file:./data/s1.db", "file:./data/s2.db"],
 * };
 * ```
 */
export interface LibsqlJournalOptions {
  /**
   * The database: `file:path` (a local SQLite file, switched to WAL mode), `:memory:` (gone on
   * close), or a remote server `libsql://…`, `http(s)://…`, `ws(s)://…` (sqld, Turso). Give
   * either `url` or `shards`.
   */
  readonly url?: string;
  /**
   * Several databases, each a shard with its own writer: an actor's log, snapshot,
   * idempotency records and reminders live in shard `hash(type, id) mod shards.length`
   * (FNV-1a of the actor key `"<type>/<id>"`). Each database records the count and its place;
   * opening it with another count or order is refused (`unavailable`, saying which). Record
   * stores live in the first shard. Give either `url` or `shards`.
   */
  readonly shards?: readonly string[];
  /** Token for remote servers (every shard). */
  readonly authToken?: string;
  /**
   * How long a write keeps trying while the database is locked by another connection or
   * process (or a server says it is busy) before it fails with `unavailable`, counted from
   * when it was made. Local databases are used from a worker thread: waiting for a lock never
   * blocks the event loop.
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
   * How many idempotency records are kept per actor, and for how long (applied by
   * {@link Journal.pruneIdempotency}, which the reminder service's leader calls).
   * @default {IDEMPOTENCY_RETENTION}
   */
  readonly retention?: { readonly maxAgeMs: number; readonly maxPerActor: number };
  /**
   * The wall clock that dates idempotency records (ms since the epoch): a system's clock's
   * `now` (`createSystem({ journal: url, clock })` gives it). @default {systemClock.now}
   */
  readonly now?: () => number;
  /**
   * Local files and `:memory:`: run the database on a worker thread that owns the connection
   * (`true`), or on this thread through `@libsql/client` (`false`: each commit then blocks
   * the event loop; for runtimes without workers). Remote URLs always use the asynchronous
   * client on this thread.
   * @default {true}
   */
  readonly worker?: boolean;
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
  /** The URL it was opened with, without its query string (the first shard's with shards). */
  readonly url: string;
  /** The URLs of its shards, without their query strings. */
  readonly shardUrls: readonly string[];
  /**
   * Prunes idempotency records now, in every shard: drops those older than
   * `retention.maxAgeMs` before `now`, and keeps at most `retention.maxPerActor` per actor.
   */
  pruneIdempotency(now?: number): Promise<void>;
  /**
   * A record store backend on this journal's (first) database, its writes group-committed
   * with the journal's (what `system.store()` uses when this is the system's journal).
   * Closing it leaves the journal open; closing the journal closes it.
   */
  openStore(): StoreBackend;
  /** Same as {@link Journal.close}. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Opens a journal on one libSQL database (`url`) or on several shards (`shards`). Each
 * database is opened, switched to WAL mode and given its schema on first use (retrying while
 * it is busy); the schema version is recorded in `troupe_meta`, and older versions are
 * migrated.
 *
 * Where the work runs: a local file (or `:memory:`) is owned by a worker thread per shard
 * (through the runtime's SQLite, `node:sqlite`), with a second connection that runs passive
 * checkpoints, so no commit, lock wait or checkpoint runs on the main thread; lookups by key
 * use a read-only connection on the calling thread. A remote server is used through the
 * asynchronous `@libsql/client`. In one process, do not open the same file with another SQLite
 * library (such as `@libsql/client`) while the journal has it open: two libraries in one
 * process do not see each other's locks.
 *
 * Schema (version 3): `events(pos, actor, seq, prev, type, version, data, at)` in commit
 * order (`pos` is the shard's commit-order position; `prev` links each event to its actor's
 * previous one), `activations(id, actor, epoch, seq, pos, prev_pos, owner, batch)` (each
 * actor's epoch, head and owner), `event_marks(actor, seq, pos)` (every 32nd event of an
 * actor, for reads from any seq), `snapshots`, `idempotency(actor, key, fingerprint, reply,
 * at)`, `reminders`, `troupe_meta(key, value)`. Why this layout: bench/README.md (WAL bytes
 * per event).
 *
 * Writes are group-committed and pipelined: the appends, activations, releases, reminder
 * deletions and record store writes that arrive while a batch commits form the next one, and
 * the next batch is already on its way while one commits. Each append is checked in SQL
 * against its actor's epoch and head (the head update is conditional) and written only if it
 * passes; appends of one actor that continue each other commit together. A failed check
 * rejects with `ConflictError` (code `conflict`).
 *
 * Errors: a locked database (`busyTimeoutMs` passed) and a read-only database reject with
 * `UnavailableError` (code `unavailable`), saying what was attempted on which database; the
 * journal stays usable. So does a shard opened with another count or order. Unexpected
 * database errors reject with `InternalError` (code `internal`); calls after `close()` with
 * `ClosedError`.
 *
 * @example
 * ```ts
 * import { isOwned } from "@troupe/troupe/spi";
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

/** FNV-1a (32 bits) of the UTF-8 bytes of an actor key: stable across versions and runtimes. */
export function actorHash(actor: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(actor)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

class LibsqlJournalImpl implements LibsqlJournal {
  readonly url: string;
  readonly shardUrls: readonly string[];
  readonly shards: number;
  readonly #shards: readonly Shard[];
  readonly #retention: { readonly maxAgeMs: number; readonly maxPerActor: number };
  readonly #now: () => number;
  /** Which shard a reminder read by dueReminders() lives in (for deleteReminder). */
  readonly #reminderShard = new Map<string, number>();
  #closed = false;
  #closing: Promise<void> | undefined;
  #opened: Promise<void> | true | undefined;

  constructor(options: LibsqlJournalOptions) {
    const urls = options?.shards ?? (options?.url !== undefined ? [options.url] : []);
    if (options?.shards !== undefined && options.url !== undefined) {
      throw new TypeError("libsqlJournal() takes either url or shards, not both");
    }
    if (urls.length === 0 || urls.some((u) => typeof u !== "string" || u === "")) {
      throw new TypeError(
        'libsqlJournal() needs a url, e.g. "file:./data/troupe.db", or shards: [url, …]',
      );
    }
    if (new Set(urls).size !== urls.length) {
      throw new TypeError(
        "libsqlJournal(): each shard needs a database of its own (a URL is repeated)",
      );
    }
    const sharded = options.shards !== undefined;
    this.shardUrls = urls.map((u) => u.replace(/\?.*$/, ""));
    this.url = this.shardUrls[0]!;
    this.shards = urls.length;
    this.#retention = options.retention ?? IDEMPOTENCY_RETENTION;
    this.#now = options.now ?? systemClock.now;
    const busyTimeoutMs = Math.max(0, options.busyTimeoutMs ?? 5000);
    this.#shards = urls.map((url, index) =>
      new Shard(
        connect({
          url,
          ...(options.authToken === undefined ? {} : { authToken: options.authToken }),
          busyTimeoutMs,
          synchronous: options.synchronous ?? "full",
          openTimeoutMs: options.openTimeoutMs ?? 30_000,
          ...(sharded ? { shard: { index, count: urls.length } } : {}),
          ...(options.worker === false ? { inThread: true } : {}),
        }),
        {
          url: this.shardUrls[index]!,
          busyTimeoutMs,
          maxBatch: Math.max(1, options.maxBatch ?? 2000),
          now: this.#now,
        },
      )
    );
  }

  shardOf(actor: string): number {
    if (typeof actor !== "string" || actor === "") {
      throw new TypeError(`shardOf() needs an actor key, got ${String(actor)}`);
    }
    return this.shards === 1 ? 0 : actorHash(actor) % this.shards;
  }

  #shard(actor: string): Shard {
    return this.#shards[this.shardOf(actor)]!;
  }

  /**
   * With shards, the first call opens every shard (so a database recorded with another count
   * or place is refused whichever actor is asked for first); later calls go straight through.
   */
  #ready(): Promise<void> | undefined {
    if (this.#opened === true || this.shards === 1) return undefined;
    this.#opened ??= Promise.all(
      this.#shards.map((s) => s.read("open the journal", [{ sql: "SELECT 1", args: [] }])),
    ).then(
      () => void (this.#opened = true),
      (err) => {
        this.#opened = undefined; // the next call tries again
        throw err;
      },
    );
    return this.#opened;
  }

  /** Runs `fn` once every shard is open (see {@link #ready}). */
  #then<T>(fn: () => Promise<T>): Promise<T> {
    const ready = this.#ready();
    return ready ? ready.then(fn) : fn();
  }

  #check(what: string): void {
    if (this.#closed) throw new ClosedError(`Cannot ${what}: the journal ${this.url} is closed`);
  }

  activate(actor: string, claim?: Claim): Promise<Recovered | Owned> {
    try {
      validateClaim(actor, claim);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#then(() => this.#shard(actor).activate(actor, claim));
  }

  release(actor: string, node: string, epoch: number): Promise<void> {
    if (typeof actor !== "string" || actor === "") {
      return Promise.reject(new TypeError(`Cannot release: actor must be a non-empty string`));
    }
    return this.#then(() => this.#shard(actor).release(actor, node, epoch));
  }

  async owner(actor: string): Promise<Owned | undefined> {
    await this.#ready();
    const rows = await this.#shard(actor).readPoint(`read the owner of "${actor}"`, {
      sql: "SELECT owner, epoch FROM activations WHERE actor = ? AND owner IS NOT NULL",
      args: [actor],
    });
    const r = rows[0];
    return r ? { owner: String(r[0]), epoch: Number(r[1]) } : undefined;
  }

  append(append: Append): Promise<void> {
    try {
      validateAppend(append);
    } catch (err) {
      return Promise.reject(err);
    }
    // no closure on the way of every append once the shards are open
    const ready = this.#ready();
    if (!ready) return this.#shard(append.actor).append(append);
    return ready.then(() => this.#shard(append.actor).append(append));
  }

  async read(actor: string, from: number, limit: number): Promise<StoredEvent[]> {
    const first = Math.max(1, Math.floor(from));
    if (!(limit > 0)) {
      this.#check(`read "${actor}"`);
      return [];
    }
    const to = first + Math.floor(Math.min(limit, 1e9)) - 1;
    await this.#ready();
    const rows = await this.#shard(actor).read(`read "${actor}"`, [
      readStatement(actor, first, to),
    ]);
    return rows[0]!.map(([seq, type, version, data, at]) => ({
      seq: Number(seq),
      type: String(type),
      version: Number(version),
      data: bytes(data),
      at: Number(at),
    }));
  }

  async reply(actor: string, key: string): Promise<StoredReply | undefined> {
    await this.#ready();
    const rows = await this.#shard(actor).readPoint(`read a reply of "${actor}"`, {
      sql: "SELECT reply, fingerprint FROM idempotency WHERE actor = ? AND key = ?",
      args: [actor, key],
    });
    const r = rows[0];
    if (!r) return undefined;
    return {
      reply: bytes(r[0]),
      ...(r[1] === null || r[1] === undefined ? {} : { fingerprint: String(r[1]) }),
    };
  }

  async readCommitted(shard: number, after: number, limit: number): Promise<CommittedEvent[]> {
    validateFeedRead(this.shards, shard, after, limit);
    if (limit === 0) {
      this.#check("read committed events");
      return [];
    }
    await this.#ready();
    const rows = await this.#shards[shard]!.read("read committed events", [
      committedStatement(after, limit),
    ]);
    return rows[0]!.map(([pos, actor, seq, type, version, data, at]) => ({
      position: Number(pos),
      actor: String(actor),
      seq: Number(seq),
      type: String(type),
      version: Number(version),
      data: bytes(data),
      at: Number(at),
    }));
  }

  async dueReminders(now: number, limit: number): Promise<Reminder[]> {
    const n = Math.max(0, Math.floor(limit));
    await this.#ready();
    const parts = await Promise.all(this.#shards.map((s, i) =>
      s.read("read due reminders", [{
        sql: `SELECT ${REMINDER_COLUMNS} FROM reminders WHERE due <= ? ORDER BY due, id LIMIT ?`,
        args: [now, n],
      }]).then((rows) =>
        rows[0]!.map((row) => {
          const r = reminderOf(row, bytes);
          if (this.shards > 1) this.#reminderShard.set(r.id, i);
          return r;
        })
      )
    ));
    const all = parts.flat();
    if (parts.length > 1) {
      all.sort((a, b) => a.due - b.due || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }
    return all.slice(0, n);
  }

  async nextReminder(): Promise<number | undefined> {
    await this.#ready();
    const dues = await Promise.all(
      this.#shards.map((s) =>
        s.read("read the next reminder", [{ sql: "SELECT min(due) FROM reminders", args: [] }])
      ),
    );
    let next: number | undefined;
    for (const rows of dues) {
      const due = rows[0]![0]?.[0];
      if (due !== null && due !== undefined && (next === undefined || Number(due) < next)) {
        next = Number(due);
      }
    }
    return next;
  }

  async deleteReminder(id: string): Promise<void> {
    await this.#ready();
    const known = this.#reminderShard.get(id);
    if (known !== undefined) {
      await this.#shards[known]!.deleteReminder(id);
      this.#reminderShard.delete(id);
      return;
    }
    await Promise.all(this.#shards.map((s) => s.deleteReminder(id)));
  }

  async rescheduleReminder(id: string, fromDue: number, toDue: number): Promise<void> {
    await this.#ready();
    const stmt = rescheduleStatement(id, fromDue, toDue);
    const known = this.#reminderShard.get(id);
    const shards = known !== undefined ? [this.#shards[known]!] : this.#shards;
    await Promise.all(shards.map((s) => s.custom(`reschedule reminder "${id}"`, [stmt])));
  }

  async readOutbox(shard: number, limit: number): Promise<OutboxMessage[]> {
    validateFeedRead(this.shards, shard, 0, limit);
    if (limit === 0) return [];
    await this.#ready();
    const rows = await this.#shards[shard]!.read("read the outbox", [outboxStatement(limit)]);
    return rows[0]!.map(([id, topic, data, contentType, at]) => ({
      id: String(id),
      topic: String(topic),
      data: bytes(data),
      contentType: String(contentType),
      at: Number(at),
    }));
  }

  async deleteOutbox(shard: number, ids: readonly string[]): Promise<void> {
    validateFeedRead(this.shards, shard, 0, 0);
    if (ids.length === 0) return;
    await this.#ready();
    await this.#shards[shard]!.custom("delete from the outbox", deleteOutboxStatements(ids));
  }

  async pruneIdempotency(now: number = this.#now()): Promise<void> {
    const stmts = pruneStatements(now - this.#retention.maxAgeMs, this.#retention.maxPerActor);
    await this.#ready();
    await Promise.all(this.#shards.map((s) => s.write("prune idempotency records", stmts)));
  }

  openStore(): StoreBackend {
    return storeOnShard(this.#shards[0]!, this.url);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      await Promise.all(this.#shards.map((s) => s.close()));
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
