/**
 * One journal shard as the main thread sees it: the group commit. Writes (appends,
 * activations, releases, reminder deletions, record store writes) wait in a queue; what
 * queued while a batch commits forms the next batch, and up to {@link MAX_IN_FLIGHT} batches
 * are on their way to the database at once (pipelined: the database thread starts the next
 * as soon as one commits). Each caller is settled on its own when its batch comes back.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import {
  type ActorError,
  ClosedError,
  ConflictError,
  InternalError,
  UnavailableError,
} from "../../mod.ts";
import {
  type Append,
  type Claim,
  type Owned,
  type Recovered,
  staleEpoch,
  unexpectedSeq,
} from "../../spi.ts";
import type { Connection } from "./_connection.ts";
import {
  type ActivateOutcome,
  type BatchOutcome,
  type EngineError,
  GROUP_FAILED,
  GROUP_WRITTEN,
  isBusyCode,
  type Isolated,
  type Rows,
  toEngineError,
  type WriteBatch,
} from "./_engine.ts";
import type { Stmt } from "./_sql.ts";
import { encodeGroups } from "./_wire.ts";

/** Batches on their way to the database at once. */
const MAX_IN_FLIGHT = 2;
/**
 * A batch leaves at once, without waiting for the end of the event loop's turn, once this
 * many writes queued while none is in flight: the database thread starts on them while this
 * thread makes the rest (each batch is a commit, and a commit's fsync is the costly part, so
 * only an idle database thread gets one early).
 */
const EAGER_BATCH = 256;
/** How often, at most, a passive checkpoint is asked for while commits go on, in ms. */
const CHECKPOINT_EVERY_MS = 100;
/**
 * Appends settled per turn of the event loop: each settled caller runs on at once (its reply,
 * often its next message), so settling a batch of thousands in one turn would hold the event
 * loop (timers, heartbeats, I/O) for all of their continuations. FIFO across batches.
 */
const SETTLE_SLICE = 64;

interface Waiter<T> {
  /** `performance.now()` time after which it stops waiting for a locked database. */
  readonly deadline: number;
  resolve(value: T): void;
  reject(err: unknown): void;
}

/**
 * An append waiting for its batch (a class, not an object literal: see docs/architecture.md,
 * "Classes, not literals").
 */
class PendingAppend implements Waiter<void> {
  /** The next append of its group in a batch (one that continues this one). */
  next: PendingAppend | undefined = undefined;
  constructor(
    readonly append: Append,
    readonly deadline: number,
    readonly resolve: (value: void) => void,
    readonly reject: (err: unknown) => void,
  ) {}
}
interface PendingActivation extends Waiter<Recovered | Owned> {
  readonly actor: string;
  readonly claim: Claim | undefined;
}
interface PendingRelease extends Waiter<void> {
  readonly release: { actor: string; node: string; epoch: number };
}
interface PendingDelete extends Waiter<void> {
  readonly id: string;
}
interface PendingCustom extends Waiter<Rows[]> {
  readonly stmts: readonly Stmt[];
  readonly what: string;
}

const appendOf = (p: PendingAppend): Append => p.append;
const nextOf = (p: PendingAppend): PendingAppend | undefined => p.next;
const resolveOne = (p: PendingAppend): void => p.resolve();

/** Calls `fn` with each append of the group that starts at `first`, unlinking them. */
function forEachOf(first: PendingAppend, fn: (p: PendingAppend) => void): void {
  for (let p: PendingAppend | undefined = first; p !== undefined;) {
    const next: PendingAppend | undefined = p.next;
    p.next = undefined;
    fn(p);
    p = next;
  }
}

/** Options of {@link Shard}. */
export interface ShardOptions {
  /** For messages: the database URL without its query string. */
  readonly url: string;
  /** How long a write waits for a locked database, from when it was made. */
  readonly busyTimeoutMs: number;
  /** Most appends in one batch. */
  readonly maxBatch: number;
  /** The wall clock that dates idempotency records. */
  readonly now: () => number;
}

/** The group commit of one shard. */
export class Shard {
  readonly #conn: Connection;
  readonly #o: ShardOptions;
  #appends: PendingAppend[] = [];
  #activations: PendingActivation[] = [];
  #releases: PendingRelease[] = [];
  #deletes: PendingDelete[] = [];
  #custom: PendingCustom[] = [];
  #queued = 0;
  #inFlight = 0;
  #scheduled = false;
  /** `performance.now()` at the first write of the current turn's batch. */
  #windowAt = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #idle: (() => void)[] = [];
  #lastCheckpoint = 0;
  /** Batches whose groups are being settled, a slice per turn of the event loop. */
  #toSettle: {
    groups: PendingAppend[];
    outcome: BatchOutcome;
    next: number;
  }[] = [];
  #settling = false;

  constructor(conn: Connection, options: ShardOptions) {
    this.#conn = conn;
    this.#o = options;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  // ---- writes --------------------------------------------------------------------------

  append(append: Append): Promise<void> {
    if (this.#closed) return Promise.reject(this.closedError(`append to "${append.actor}"`));
    return new Promise((resolve, reject) => {
      this.#appends.push(new PendingAppend(append, this.#deadline(), resolve, reject));
      this.#queue();
    });
  }

  activate(actor: string, claim: Claim | undefined): Promise<Recovered | Owned> {
    if (this.#closed) return Promise.reject(this.closedError(`activate "${actor}"`));
    return new Promise((resolve, reject) => {
      this.#activations.push({ actor, claim, deadline: this.#deadline(), resolve, reject });
      this.#queue();
    });
  }

  release(actor: string, node: string, epoch: number): Promise<void> {
    if (this.#closed) return Promise.reject(this.closedError(`release "${actor}"`));
    return new Promise((resolve, reject) => {
      this.#releases.push({
        release: { actor, node, epoch },
        deadline: this.#deadline(),
        resolve,
        reject,
      });
      this.#queue();
    });
  }

  deleteReminder(id: string): Promise<void> {
    if (this.#closed) return Promise.reject(this.closedError(`delete reminder "${id}"`));
    return new Promise((resolve, reject) => {
      this.#deletes.push({ id, deadline: this.#deadline(), resolve, reject });
      this.#queue();
    });
  }

  /**
   * Runs `stmts` in the next group commit, in order, and resolves with the rows of each; if
   * one fails, the write fails alone.
   */
  custom(what: string, stmts: readonly Stmt[]): Promise<Rows[]> {
    if (this.#closed) return Promise.reject(this.closedError(what));
    return new Promise((resolve, reject) => {
      this.#custom.push({ stmts, what, deadline: this.#deadline(), resolve, reject });
      this.#queue();
    });
  }

  /** Runs `stmts` in a transaction of their own (not batched: rare, possibly long writes). */
  async write(what: string, stmts: readonly Stmt[]): Promise<Rows[]> {
    if (this.#closed) throw this.closedError(what);
    try {
      return await this.#conn.write(stmts, this.#o.busyTimeoutMs);
    } catch (err) {
      throw this.error(toEngineError(err), what);
    }
  }

  /** Runs one read by primary key (see `Connection.readPoint`). */
  async readPoint(what: string, stmt: Stmt): Promise<Rows> {
    if (this.#closed) throw this.closedError(what);
    try {
      return await this.#conn.readPoint(stmt);
    } catch (err) {
      throw this.error(toEngineError(err), what);
    }
  }

  /** Runs reads. */
  async read(what: string, stmts: readonly Stmt[]): Promise<Rows[]> {
    if (this.#closed) throw this.closedError(what);
    try {
      return await this.#conn.read(stmts);
    } catch (err) {
      throw this.error(toEngineError(err), what);
    }
  }

  /**
   * When a write made now stops waiting for a locked database. The writes of one turn of the
   * event loop (those that find a batch scheduled) share the time of its first: one clock
   * read per batch, not per write, and at most a turn early.
   */
  #deadline(): number {
    if (!this.#scheduled) this.#windowAt = performance.now();
    return this.#windowAt + this.#o.busyTimeoutMs;
  }

  #queue(): void {
    this.#queued++;
    if (this.#inFlight === 0 && this.#queued >= EAGER_BATCH) return this.#dispatch();
    if (!this.#scheduled) {
      this.#scheduled = true;
      // Let every write of this turn of the event loop join the batch.
      setImmediate(() => {
        this.#scheduled = false;
        this.#dispatch();
      });
    }
  }

  #dispatch(): void {
    while (this.#inFlight < MAX_IN_FLIGHT && this.#queued > 0) {
      const taken = this.#take();
      this.#inFlight++;
      void this.#run(taken).finally(() => {
        this.#inFlight--;
        if (this.#queued > 0) this.#dispatch();
        else if (this.#inFlight === 0) { for (const wake of this.#idle.splice(0)) wake(); }
      });
    }
  }

  /** The next batch: queue order; per actor, only appends that continue each other. */
  #take(): Taken {
    // A group is its first append, the others linked from it (no list per group). The two
    // lists are made by Array.of, not literals (see PendingAppend); once a batch, not per append.
    const groups: PendingAppend[] = Array.of();
    const byActor = new Map<string, PendingAppend>(); // the last append of each actor's group
    let blocked: Set<string> | undefined;
    const rest: PendingAppend[] = Array.of();
    const max = this.#o.maxBatch;
    let count = 0;
    for (const p of this.#appends) {
      const a = p.append;
      if (count >= max || blocked?.has(a.actor)) {
        rest.push(p);
        (blocked ??= new Set()).add(a.actor);
        continue;
      }
      const tail = byActor.get(a.actor);
      if (!tail) {
        p.next = undefined;
        byActor.set(a.actor, p);
        groups.push(p);
        count++;
        continue;
      }
      const last = tail.append;
      if (last.epoch === a.epoch && last.expectedSeq + last.events.length === a.expectedSeq) {
        p.next = undefined;
        tail.next = p;
        byActor.set(a.actor, p);
        count++;
      } else {
        // Not a continuation: it waits for the next batch (so does what follows it).
        rest.push(p);
        (blocked ??= new Set()).add(a.actor);
      }
    }
    // The queue lets go of its appends (a queue in the old generation would keep them alive).
    this.#appends.length = 0;
    this.#appends = rest;
    const activations: PendingActivation[] = [];
    const later: PendingActivation[] = [];
    const claimed = new Set<string>();
    for (const p of this.#activations) {
      if (claimed.has(p.actor)) later.push(p);
      else {
        claimed.add(p.actor);
        activations.push(p);
      }
    }
    this.#activations = later;
    const releases = this.#releases;
    const deletes = this.#deletes;
    const custom = this.#custom;
    this.#releases = [];
    this.#deletes = [];
    this.#custom = [];
    this.#queued = this.#appends.length + this.#activations.length;
    return {
      groups,
      activations,
      releases,
      deletes,
      custom,
    };
  }

  async #run(t: Taken): Promise<void> {
    // The earliest deadline: a group's first append is its oldest.
    let deadline = Infinity;
    for (const g of t.groups) deadline = Math.min(deadline, g.deadline);
    for (const w of t.activations) deadline = Math.min(deadline, w.deadline);
    for (const w of t.releases) deadline = Math.min(deadline, w.deadline);
    for (const w of t.deletes) deadline = Math.min(deadline, w.deadline);
    for (const w of t.custom) deadline = Math.min(deadline, w.deadline);
    const batch: WriteBatch = {
      groups: encodeGroups(t.groups, appendOf, nextOf),
      activations: t.activations.map((p) => ({
        actor: p.actor,
        ...(p.claim ? { node: p.claim.node } : {}),
        ...(p.claim?.takeOver !== undefined ? { takeOver: p.claim.takeOver } : {}),
      })),
      releases: t.releases.map((p) => p.release),
      deletes: t.deletes.map((p) => p.id),
      custom: t.custom.map((p) => p.stmts),
      now: this.#o.now(),
    };
    let outcome: BatchOutcome;
    try {
      outcome = await this.#conn.batch(batch, Math.max(0, deadline - performance.now()));
    } catch (err) {
      const error = toEngineError(err);
      for (const g of t.groups) {
        forEachOf(g, (p) => p.reject(this.error(error, `append to "${p.append.actor}"`)));
      }
      for (const p of t.activations) p.reject(this.error(error, `activate "${p.actor}"`));
      for (const p of t.releases) p.reject(this.error(error, `release "${p.release.actor}"`));
      for (const p of t.deletes) p.reject(this.error(error, `delete reminder "${p.id}"`));
      for (const p of t.custom) p.reject(this.error(error, p.what));
      return;
    }
    if (t.groups.length > 0 || batch.activations.length > 0 || batch.custom.length > 0) {
      const now = performance.now();
      if (now - this.#lastCheckpoint >= CHECKPOINT_EVERY_MS) {
        this.#lastCheckpoint = now;
        this.#conn.checkpoint();
      }
    }
    this.#settleGroups(t.groups, outcome);
    t.activations.forEach((p, i) => {
      const r = outcome.activations[i]!;
      if (!r.ok) return p.reject(this.error(r.error, `activate "${p.actor}"`));
      p.resolve(toRecovered(r.value));
    });
    settleAll(
      t.releases,
      outcome.releases,
      (p, e) => this.error(e, `release "${p.release.actor}"`),
    );
    settleAll(t.deletes, outcome.deletes, (p, e) => this.error(e, `delete reminder "${p.id}"`));
    settleAll(t.custom, outcome.custom, (p, e) => this.error(e, p.what));
  }

  /** Settles the groups of a batch, {@link SETTLE_SLICE} at a time, after any still waiting. */
  #settleGroups(groups: PendingAppend[], outcome: BatchOutcome): void {
    if (groups.length === 0) return;
    this.#toSettle.push({ groups, outcome, next: 0 });
    if (!this.#settling) this.#settleSome();
  }

  #settleSome(): void {
    this.#settling = true;
    let budget = SETTLE_SLICE;
    while (budget > 0 && this.#toSettle.length > 0) {
      const s = this.#toSettle[0]!;
      const end = Math.min(s.groups.length, s.next + budget);
      this.#settleRange(s.groups, s.outcome, s.next, end);
      budget -= end - s.next;
      s.next = end;
      if (end === s.groups.length) {
        this.#toSettle.shift();
        // Settled: the batch's list lets go of its appends (see #take).
        s.groups.length = 0;
      }
    }
    if (this.#toSettle.length === 0) {
      this.#settling = false;
      if (this.#queued === 0 && this.#inFlight === 0) {
        for (const wake of this.#idle.splice(0)) wake();
      }
      return;
    }
    setImmediate(() => this.#settleSome());
  }

  #settleRange(
    groups: readonly PendingAppend[],
    outcome: BatchOutcome,
    from: number,
    to: number,
  ): void {
    const status = outcome.groups;
    let heads: Map<number, { epoch: number; seq: number }> | undefined;
    let errors: Map<number, EngineError> | undefined;
    for (let i = from; i < to; i++) {
      const first = groups[i]!;
      const s = status[i];
      if (s === GROUP_WRITTEN) {
        forEachOf(first, resolveOne);
        continue;
      }
      if (s === GROUP_FAILED) {
        errors ??= new Map(outcome.groupErrors);
        const e = errors.get(i) ?? outcome.error ?? { name: "Error", message: "unknown failure" };
        forEachOf(first, (p) => p.reject(this.error(e, `append to "${p.append.actor}"`)));
        continue;
      }
      heads ??= new Map(outcome.heads.map(([g, epoch, seq]) => [g, { epoch, seq }]));
      const head = heads.get(i);
      forEachOf(first, (p) => {
        const a = p.append;
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
      });
    }
  }

  // ---- errors --------------------------------------------------------------------------

  /** The error of a call after close(). */
  closedError(what: string): ClosedError {
    return new ClosedError(`Cannot ${what}: the journal ${this.#o.url} is closed`);
  }

  /** Maps a database error to a typed error that says what was attempted, on which database. */
  error(e: EngineError, what: string): ActorError {
    const where = `in ${this.#o.url}`;
    const code = e.code ?? "";
    const cause = Object.assign(new Error(e.message), { name: e.name, code });
    if (code === "CLOSED") {
      return new ClosedError(`Cannot ${what}: the journal ${this.#o.url} is closed`, { cause });
    }
    if (code === "SCHEMA" || code === "SHARDS") return new UnavailableError(e.message, { cause });
    if (isBusyCode(code)) {
      return new UnavailableError(
        `Cannot ${what} ${where}: the database is locked by another connection or process (waited up to ${this.#o.busyTimeoutMs} ms)`,
        { cause },
      );
    }
    if (code.startsWith("SQLITE_READONLY")) {
      return new UnavailableError(`Cannot ${what} ${where}: the database is read-only`, { cause });
    }
    if (code.startsWith("SQLITE_CANTOPEN") || code.startsWith("SQLITE_PERM")) {
      return new UnavailableError(`Cannot ${what} ${where}: the database file cannot be opened`, {
        cause,
      });
    }
    if (code.startsWith("SQLITE_CONSTRAINT")) {
      return new ConflictError(`Cannot ${what} ${where}: ${e.message}`, { cause });
    }
    return new InternalError(`Cannot ${what} ${where}: ${e.message}`, { cause });
  }

  // ---- closing -------------------------------------------------------------------------

  /** Waits for every accepted write, then releases the database. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      if (this.#queued > 0 || this.#inFlight > 0 || this.#settling) {
        await new Promise<void>((resolve) => {
          this.#idle.push(resolve);
          this.#dispatch();
        });
      }
      await this.#conn.close();
    })();
    return this.#closing;
  }
}

interface Taken {
  /** Per group, its first append; the others (one actor, each continuing the previous one)
   * follow it through `next`. */
  readonly groups: PendingAppend[];
  readonly activations: readonly PendingActivation[];
  readonly releases: readonly PendingRelease[];
  readonly deletes: readonly PendingDelete[];
  readonly custom: readonly PendingCustom[];
}

function settleAll<P extends Waiter<T>, T>(
  pending: readonly P[],
  results: readonly Isolated<T>[],
  error: (p: P, e: EngineError) => ActorError,
): void {
  pending.forEach((p, i) => {
    const r = results[i]!;
    if (r.ok) p.resolve(r.value);
    else p.reject(error(p, r.error));
  });
}

function toRecovered(r: ActivateOutcome): Recovered | Owned {
  if (!r.won) return { owner: r.owner, epoch: r.epoch };
  return {
    epoch: r.epoch,
    seq: r.seq,
    events: r.events,
    ...(r.snapshot ? { snapshot: r.snapshot } : {}),
  };
}
