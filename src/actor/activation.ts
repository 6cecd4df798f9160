/**
 * One activation of an actor on this node: a bounded mailbox, one turn at a time, recovery
 * from snapshot + events, durable commit before replies, passivation.
 *
 * @module
 */

import {
  ActorError,
  ConflictError,
  DeadlockError,
  InternalError,
  OverloadedError,
  TimeoutError,
  UnavailableError,
} from "../errors.ts";
import { createHash } from "node:crypto";
import type {
  Append,
  IdempotencyRecord,
  Journal,
  NewEvent,
  OutboxMessage,
  Recovered,
  Reminder,
  Snapshot,
  StoredEvent,
} from "../journal/types.ts";
import type { NodeObserver, TypeStats } from "../observe/node.ts";
import type { Clock, TimerId } from "../util/clock.ts";
import {
  type Deferred,
  deferred,
  isPromiseLike,
  type TimerWheel,
  withDeadline,
} from "../util/async.ts";
import type { ActorDefinition, AnyActorTypes } from "./define.ts";
import type { Context } from "./define.ts";
import type { Envelope, Logger } from "./envelope.ts";
import { pumpStream } from "./stream.ts";
import { inMacrotask, loopStarved } from "../util/loop.ts";
import { upcast } from "../journal/history.ts";
import { isValidSubject } from "../mesh/subject.ts";
import type { Dispatcher } from "./ref.ts";
import { gatedDispatcher, TurnContext, type TurnHost } from "./turn_context.ts";

/** What an activation needs from its node; `M` is the node's message type. */
export interface ActivationHost<M extends Envelope = Envelope> extends TurnHost {
  /** The journal. */
  readonly journal: Journal;
  /** Logs. */
  readonly log: Logger;
  /** The node's clock: deadlines, idle times, event timestamps. */
  readonly clock: Clock;
  /** Deadlines (on {@link clock}). */
  readonly wheel: TimerWheel;
  /** Traces turns and keeps the node's counts. */
  readonly observer: NodeObserver;
  /** Publishes a pub/sub message (after commit); `durable`: to a durable topic. */
  publish(topic: string, payload: unknown, options?: { durable?: boolean }): Promise<void>;
  /**
   * A turn's outbox messages are durable (stored with its events): forward them to their
   * durable topics (at least once; a node that dies first leaves them to the outbox sweep).
   */
  forwardOutbox?(actor: string, messages: readonly OutboxMessage[]): void;
  /** Whether this node may not process messages at `now` (its lease lapsed). */
  fenced(now?: number): boolean;
  /**
   * Called once when the activation has stopped; `leftover` messages, which nothing processed,
   * need a new home (`owner`: the live node that owns the actor, when the claim found one).
   */
  stopped(activation: Activation<M>, leftover: M[], owner?: Redirect): void;
  /**
   * Claims the actor cluster-wide and starts its activation in the journal (a new epoch, and
   * what to recover from); throws {@link Redirect} when another live node owns it.
   */
  claim(activation: Activation<M>): Promise<Recovered>;
  /** A reminder was committed. */
  reminderScheduled(due: number): void;
}

/** Thrown by `host.claim()`: the actor is owned by another live node. */
export class Redirect extends Error {
  /** `owner` holds the actor at epoch `revision`. */
  constructor(readonly owner: string, readonly revision: number) {
    super(`Actor is owned by node "${owner}"`);
  }
}

/** An event a turn emitted, not yet handed to the journal (a class: see {@link AppendOf}). */
class Staged {
  constructor(readonly type: string, readonly payload: unknown, readonly at: number) {}
}

/** Turns a handler's thrown value into what the caller sees (masking internal errors). */
export function callerError(err: unknown, log: Logger, where: string): ActorError {
  if (err instanceof ActorError) return err;
  log.error(`Handler failed: ${where}`, {
    error: err instanceof Error ? (err.stack ?? err.message) : String(err),
  });
  return new InternalError("Internal error");
}

const IDEMPOTENCY_CACHE = 256;

/** The reply of an earlier call with an idempotency key, as this activation remembers it. */
interface KnownReply {
  /** What that call was (handler and payload digest). */
  readonly fingerprint: string;
  /** Its reply. */
  value: unknown;
  /** Set while its turn's commit is in flight (its reply not released yet). */
  held?: boolean;
}

/** An output held until the appends before it are durable. */
interface Held {
  /** They are durable: let it out. */
  ok(): void;
  /** A commit failed: refuse it with this error. */
  fail(err: ActorError): void;
}

// What a held reply does when released or refused: set by `Activation`'s static block (they
// use its private members).
let releaseReply: (h: HeldReply) => void;
let refuseReply: (h: HeldReply, err: ActorError) => void;

/** A turn's reply (and publishes) held behind its commit: one object, no closures, per turn. */
class HeldReply implements Held {
  constructor(
    readonly act: Activation,
    readonly m: Envelope,
    readonly result: unknown,
    readonly known: KnownReply | undefined,
    readonly publishes: readonly [string, unknown][],
  ) {}
  ok(): void {
    releaseReply(this);
  }
  fail(err: ActorError): void {
    refuseReply(this, err);
  }
}

/** An append handed to the journal, and the outputs that wait for it. */
class InFlight {
  /** Whether the journal answered. */
  done = false;
  /** The journal's error, if it failed. */
  error: unknown = undefined;
  /** The first output released when it (and every append before it) is durable. */
  first: Held | undefined = undefined;
  /** The outputs after the first, in order. */
  held: Held[] | undefined = undefined;
  constructor(
    /** Its reminders (the reminder service hears of them once durable). */
    readonly reminders: readonly Reminder[],
    /** Its outbox messages (forwarded once durable). */
    readonly outbox: readonly OutboxMessage[],
  ) {}
}

/** An event of an append (a class: see {@link AppendOf}). */
class EventOf implements NewEvent {
  constructor(
    readonly type: string,
    readonly version: number,
    readonly data: Uint8Array,
    readonly at: number,
  ) {}
}

/**
 * An append as the journal gets it. A class, not an object literal: V8 may decide for good that a
 * literal's objects live long (allocation-site pretenuring) and allocate them in the old
 * generation, where each, dead one commit later, keeps what it points to alive until a full
 * collection (docs/architecture.md, "Classes, not literals").
 */
class AppendOf implements Append {
  // Set only when present (`declare`: no field of its own otherwise, as with a literal).
  declare snapshot?: Snapshot;
  declare idempotency?: IdempotencyRecord;
  declare reminders?: readonly Reminder[];
  declare cancelReminders?: readonly string[];
  declare outbox?: readonly OutboxMessage[];
  constructor(
    readonly actor: string,
    readonly epoch: number,
    readonly expectedSeq: number,
    readonly events: readonly NewEvent[],
  ) {}
}

/** Shared by every activation with nothing staged (an idle actor allocates no arrays). */
const NONE: readonly never[] = Object.freeze([]);

/** Thrown into a turn that tries to commit after its activation stopped or its node was fenced. */
class Stopped extends UnavailableError {}

/** One activation; `M` is the node's message type. */
export class Activation<M extends Envelope = Envelope> {
  /** `type/id`. */
  readonly key: string;
  /** The definition. */
  readonly def: ActorDefinition<AnyActorTypes>;
  /** Actor id. */
  readonly id: string;
  /** Current state. */
  state: unknown;
  /** Last applied seq. */
  seq = 0;
  /** "starting" | "active" | "stopping" | "stopped". */
  status: "starting" | "active" | "stopping" | "stopped" = "starting";
  /** Monotonic time of the last message. */
  lastActive: number;
  /** Whether it became active (took messages) at some point. */
  wasActive = false;
  /** Resolves when started (rejects if recovery failed); undefined once it has. */
  #ready: Promise<void> | undefined;

  readonly #host: ActivationHost<M>;
  readonly #stats: TypeStats;
  #queue: M[] = NONE as never;
  #head = 0;
  #running = false;
  #epoch: number | undefined;
  #snapshotSeq = 0;
  #turn = 0;
  #current: M | undefined;
  /** Resolved each time the turn loop ends (idle, stopping or stopped). */
  #loopEnded: Deferred<void> | undefined;
  // Everything below is allocated on first use: an idle actor keeps little more than its state.
  #staged: Staged[] = NONE as never;
  #reminders: Reminder[] = NONE as never;
  #cancels: string[] = NONE as never;
  #outbox: OutboxMessage[] = NONE as never;
  #publishes: [string, unknown][] = NONE as never;
  #replies: Map<string, KnownReply> | undefined;
  #stopped: Deferred<void> | undefined;
  /** The state and seq the running turn rolls back to (its start, or its last commit point). */
  #base: unknown;
  #baseSeq = 0;
  /** Messages the running turn sent. */
  #sent = 0;
  /**
   * Appends handed to the journal and not yet released, oldest first: outputs of a turn wait
   * behind the last one (an output gate); empty when nothing is in flight.
   */
  #inFlight: InFlight[] = NONE as never;
  /** Set once a commit failed: the activation stopped, held outputs get this error. */
  #failure: ActorError | undefined;
  #outputs: Dispatcher | undefined;

  constructor(host: ActivationHost<M>, def: ActorDefinition<AnyActorTypes>, id: string) {
    this.#host = host;
    this.lastActive = host.clock.monotonic();
    this.def = def;
    this.id = id;
    this.key = `${def.name}/${id}`;
    this.#stats = host.observer.type(def.name);
    this.state = def.initialState();
    const ready = this.#start();
    ready.catch(() => {});
    this.#ready = ready;
  }

  /** Its epoch in the journal, once it claimed the actor. */
  get epoch(): number | undefined {
    return this.#epoch;
  }

  /** Resolves when started (rejects if recovery failed). */
  get ready(): Promise<void> {
    return this.#ready ?? Promise.resolve(); // a failed start keeps its rejected promise
  }

  /** Resolves when stopped. */
  get stoppedPromise(): Promise<void> {
    if (this.status === "stopped" && !this.#stopped) return Promise.resolve();
    return (this.#stopped ??= deferred()).promise;
  }

  #stoppedResolve(): void {
    this.#stopped?.resolve();
  }

  /** This turn's id, for call chains (deadlock detection). */
  get turnId(): string {
    return `${this.key}#${this.#turn}`;
  }

  /** Queued messages. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** Whether a turn is running. */
  get busy(): boolean {
    return this.#running;
  }

  async #start(): Promise<void> {
    try {
      const rec = await this.#host.claim(this);
      if ((this.status as Activation["status"]) !== "starting") return; // stopped meanwhile
      this.#epoch = rec.epoch;
      if (this.def.eventSourced) {
        if (rec.snapshot && rec.snapshot.version === this.def.snapshotVersion) {
          this.state = this.#host.storage.decode(rec.snapshot.state);
          this.seq = rec.snapshot.seq;
          this.#snapshotSeq = rec.snapshot.seq;
          this.#replay(rec.events.filter((e) => e.seq > this.seq));
        } else if (!rec.snapshot) {
          this.#replay(rec.events);
        }
        // A snapshot of another format, or a partial read: replay the rest from the log.
        if (this.seq !== rec.seq) await this.#replayFrom(this.seq + 1, rec.seq);
      }
      if (this.def.onActivate) await this.#hook(this.def.onActivate);
      // Stopped while it started (its node was fenced, or it was shut down): it must never
      // become active, or it would take messages beside its successor.
      if ((this.status as Activation["status"]) !== "starting") return;
      this.status = "active";
      this.wasActive = true;
      this.#ready = undefined;
      this.#kick();
    } catch (err) {
      if ((this.status as Activation["status"]) === "stopped") return; // stopped meanwhile
      this.status = "stopped";
      if (err instanceof Redirect) {
        this.#stoppedResolve();
        this.#host.stopped(this, this.#drainQueue(), err);
        throw err;
      }
      // An activation that could not start is unavailable for now (the journal's own failure
      // included); only a refusal with a meaning of its own (fenced, closed) keeps its code.
      const error = err instanceof ActorError && err.code !== "internal"
        ? err
        : new UnavailableError(`Activation of ${this.key} failed`, { cause: err });
      this.#host.log.error(`Activation of ${this.key} failed`, { error: String(err) });
      for (const m of this.#drainQueue()) m.reject(error);
      this.#stoppedResolve();
      this.#host.stopped(this, []);
      throw error;
    }
  }

  async #replayFrom(from: number, to: number): Promise<void> {
    let next = from;
    while (next <= to) {
      const page = await this.#host.journal.read(this.key, next, 1000);
      if (page.length === 0) break;
      this.#replay(page);
      next = page[page.length - 1]!.seq + 1;
    }
  }

  #replay(events: readonly StoredEvent[]): void {
    for (const e of events) {
      const reducer = this.def.events[e.type];
      if (!reducer) {
        throw new InternalError(`Stored event "${e.type}" of ${this.key} has no reducer`);
      }
      const payload = upcast(this.def, e.type, e.version, this.#host.storage.decode(e.data));
      this.state = reducer(this.state, payload);
      this.seq = e.seq;
    }
  }

  /**
   * Messages waiting behind the running one. `mailboxSize` bounds this count whatever the
   * activation's state: while it is starting (nothing runs yet) the first queued message is
   * the one that will run, so it does not count.
   */
  get waiting(): number {
    return this.#running ? this.queued : Math.max(0, this.queued - 1);
  }

  /**
   * Queues a message and returns true, or settles it (`overloaded`, deadlock, or handed on when
   * this activation has stopped) and returns false.
   */
  enqueue(m: M): boolean {
    if (this.status === "stopped") {
      this.#host.stopped(this, [m]);
      return false;
    }
    if (this.#running ? this.queued >= this.def.mailboxSize : this.queued > this.def.mailboxSize) {
      m.reject(
        new OverloadedError(`Mailbox of ${this.key} is full (${this.def.mailboxSize} messages)`),
      );
      return false;
    }
    if (m.chain.length > 0 && this.#running && m.chain.includes(this.turnId)) {
      m.reject(
        new DeadlockError(
          `Call chain came back to ${this.key}, which is busy waiting on it (${
            [...m.chain, this.key].join(" → ")
          })`,
        ),
      );
      return false;
    }
    // an array of one to start (most mailboxes hold one message at a time)
    // an array of one to start (most mailboxes hold one message at a time)
    if (this.#queue === (NONE as unknown)) this.#queue = [m];
    else this.#queue.push(m);
    m.accept(); // before the handler can run: a tell is answered by its acceptance alone
    this.#kick();
    return true;
  }

  #kick(): void {
    if (this.#running || this.status !== "active" || this.queued === 0) return;
    this.#running = true;
    // In-process asks run on microtasks alone: a caller's loop of them would starve timers and
    // I/O (the node's heartbeat, hence its lease); now and then the turn waits for a macrotask.
    if (loopStarved()) inMacrotask(this.#drainLater);
    else this.#drain();
  }

  readonly #drainLater = (): void => this.#drain();

  #take(): M | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const m = this.#queue[this.#head]!;
    this.#queue[this.#head++] = undefined as unknown as M;
    if (this.#head === this.#queue.length) {
      // Empty: an idle actor keeps no mailbox array.
      this.#queue = NONE as never;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    return m;
  }

  #drainQueue(): M[] {
    const rest = this.#queue.slice(this.#head);
    this.#queue = NONE as never;
    this.#head = 0;
    return rest;
  }

  /**
   * Runs the mailbox's turns while they are synchronous, then ends the loop, or hands it to
   * {@link #drainAsync} at the first turn that waits (no async frame for the common turn).
   */
  #drain(): void {
    let handedOff = false;
    try {
      let m: M | undefined;
      // One clock read per run of synchronous turns, again after each turn that waited: time
      // only passes (a pause included) across an await.
      const now = this.#host.clock.monotonic();
      while (this.status === "active" && (m = this.#take())) {
        if (!this.#admit(m, now)) {
          if (this.status !== "active") break;
          continue;
        }
        const r = this.#turnOf(m);
        if (r) {
          handedOff = true;
          void this.#drainAsync(r);
          return;
        }
      }
      this.lastActive = now;
    } finally {
      if (!handedOff) this.#loopDone();
    }
  }

  /** The rest of {@link #drain} after a turn that waits (`pending`). */
  async #drainAsync(pending: Promise<void>): Promise<void> {
    try {
      await pending;
      let now = this.#host.clock.monotonic();
      let m: M | undefined;
      while (this.status === "active" && (m = this.#take())) {
        if (!this.#admit(m, now)) {
          if (this.status !== "active") break;
          continue;
        }
        const r = this.#turnOf(m);
        if (r) {
          await r;
          now = this.#host.clock.monotonic();
        }
      }
      this.lastActive = now;
    } finally {
      this.#loopDone();
    }
  }

  /**
   * Whether a message taken from the mailbox may run now: one past its deadline is refused; on
   * a node past its lease, it is dropped and the activation stops.
   */
  #admit(m: M, now: number): boolean {
    if (now > m.deadline) {
      m.reject(new TimeoutError(`Message to ${this.key}.${m.handler} expired in the mailbox`));
      return false;
    }
    if (this.#host.fenced(now)) {
      // A node past its lease applies nothing more and answers nothing it did not apply.
      m.drop(new UnavailableError(`Node lost its lease; ${this.key} is not processed here`));
      this.#stop();
      return false;
    }
    return true;
  }

  /** The end of a turn loop. */
  #loopDone(): void {
    this.#running = false;
    this.#current = undefined;
    const ended = this.#loopEnded;
    this.#loopEnded = undefined;
    ended?.resolve();
    if (this.status === "active" && this.queued > 0) this.#kick();
  }

  /** Resolves when the turn loop next ends, or at `until` (monotonic ms). */
  #loopEnd(until: number): Promise<void> {
    const d = this.#loopEnded ??= deferred();
    const clock = this.#host.clock;
    return new Promise((resolve) => {
      const timer = clock.setTimeout(resolve, Math.max(0, until - clock.monotonic()));
      d.promise.then(() => {
        clock.clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Runs one message; returns a promise only when it has to wait. */
  #turnOf(m: M): Promise<void> | undefined {
    this.#turn++;
    this.#current = m;
    return this.#host.observer.turn(this.#stats, this.id, m, this.#turnBody, this);
  }

  #turnBody(m: M): Promise<void> | undefined {
    this.#sent = 0;
    if (m.idempotencyKey !== undefined) return this.#idempotentTurn(m, m.idempotencyKey);
    return this.#run(m, undefined);
  }

  // ---- idempotency ---------------------------------------------------------------------

  /**
   * A message with an idempotency key: answered from the reply of the earlier call with that
   * key (in memory, else from the journal) when there was one with effects, refused with
   * `conflict` when that call was another one (another handler or payload), else run.
   */
  #idempotentTurn(m: M, key: string): Promise<void> | undefined {
    const fingerprint = this.#fingerprint(m);
    const known = this.#replies?.get(key);
    if (known) return void this.#answerKnown(m, known, fingerprint);
    return this.#lookup(m, key, fingerprint);
  }

  async #lookup(m: M, key: string, fingerprint: string): Promise<void> {
    let stored;
    try {
      stored = await this.#host.journal.reply(this.key, key);
    } catch (err) {
      return m.reject(new UnavailableError(`Journal read failed for ${this.key}`, { cause: err }));
    }
    if (stored === undefined) {
      const r = this.#run(m, fingerprint);
      if (r) await r;
      return;
    }
    // A record written before fingerprints were stored has none: it is taken as this call.
    const entry: KnownReply = { fingerprint: stored.fingerprint ?? fingerprint, value: undefined };
    try {
      entry.value = this.#host.storage.decode(stored.reply);
    } catch (err) {
      return m.reject(callerError(err, this.#host.log, `${this.key}.${m.handler} (stored reply)`));
    }
    this.#remember(key, entry);
    this.#answerKnown(m, entry, fingerprint);
  }

  #answerKnown(m: M, known: KnownReply, fingerprint: string): void {
    if (known.fingerprint !== fingerprint) {
      return m.reject(new ConflictError("idempotency key reused for another call"));
    }
    if (!known.held) return m.resolve(known.value);
    // The first call's turn is still committing: its reply leaves with it.
    this.#hold({ ok: () => m.resolve(known.value), fail: (err) => this.#refuse(m, err) });
  }

  /** What a call was: its handler and a digest of its payload in the storage codec. */
  #fingerprint(m: M): string {
    let digest: string;
    try {
      digest = createHash("sha256").update(this.#host.storage.encode(m.payload)).digest(
        "base64url",
      );
    } catch {
      digest = "-"; // a payload the codec cannot encode (an input stream): bound to the handler
    }
    return `${m.handler}:${digest}`;
  }

  #remember(key: string, entry: KnownReply): void {
    const replies = this.#replies ??= new Map();
    replies.delete(key);
    replies.set(key, entry);
    if (replies.size > IDEMPOTENCY_CACHE) replies.delete(replies.keys().next().value!);
  }

  // ---- a turn --------------------------------------------------------------------------

  #run(m: M, fingerprint: string | undefined): Promise<void> | undefined {
    this.#base = this.state;
    this.#baseSeq = this.seq;
    const ctx = new TurnContext(this, m, this.#host);
    let result: unknown;
    try {
      const fn = this.def.handlers[m.handler]!;
      result = fn(ctx, m.payload);
    } catch (err) {
      this.#rollback();
      m.reject(callerError(err, this.#host.log, `${this.key}.${m.handler}`));
      return undefined;
    }
    if (m.kind === "stream") return this.#streamTurn(m, result);
    if (isPromiseLike(result)) return this.#finish(m, result, fingerprint);
    this.#end(m, result, fingerprint);
    return undefined;
  }

  async #finish(m: M, pending: unknown, fingerprint: string | undefined): Promise<void> {
    let result: unknown;
    try {
      result = await pending;
    } catch (err) {
      this.#rollback();
      m.reject(callerError(err, this.#host.log, `${this.key}.${m.handler}`));
      return;
    }
    this.#end(m, result, fingerprint);
  }

  /**
   * The end of a turn whose handler returned `result`: its events, reminders and idempotency
   * record go to the journal (without waiting: the next turn may run meanwhile), and its
   * reply and publishes leave once they and everything before them are durable (the output
   * gate). A turn with nothing to commit behind nothing in flight answers at once.
   */
  #end(m: M, result: unknown, fingerprint: string | undefined): void {
    const key = m.idempotencyKey;
    const publishes = this.#publishes;
    const effects = this.#journaled() || publishes.length > 0 || this.#sent > 0;
    // A turn without effects stores nothing for its key (a repeat just runs again).
    const record = key !== undefined && fingerprint !== undefined && effects;
    const needsJournal = record || this.#journaled();
    if (this.status === "stopped" || (needsJournal && this.#host.fenced())) {
      // Stopped meanwhile (lease lost, forced stop at shutdown): this turn applies nothing.
      this.#rollback();
      return m.drop(
        new Stopped(`${this.key} stopped on node "${this.#host.node}" before its turn committed`),
      );
    }
    this.#publishes = NONE as never;
    let known: KnownReply | undefined;
    if (needsJournal) {
      let reply: Uint8Array | undefined;
      try {
        if (record) reply = this.#host.storage.encode(result);
        this.#issue(record ? { key: key!, reply: reply!, fingerprint: fingerprint! } : undefined);
      } catch (err) {
        // An event, reminder or reply the codec cannot encode: the turn applies nothing.
        this.#rollback();
        return m.reject(callerError(err, this.#host.log, `${this.key}.${m.handler}`));
      }
      if (record) {
        known = { fingerprint: fingerprint!, value: result, held: true };
        this.#remember(key!, known);
      }
    }
    if (this.#inFlight.length === 0) {
      if (known) known.held = false;
      this.#publish(publishes);
      return m.resolve(result);
    }
    this.#hold(new HeldReply(this as unknown as Activation, m, result, known, publishes));
  }

  static {
    releaseReply = (h) => {
      if (h.known) h.known.held = false;
      h.act.#publish(h.publishes);
      h.m.resolve(h.result);
    };
    refuseReply = (h, err) => {
      const key = h.m.idempotencyKey;
      const replies = h.act.#replies;
      if (h.known && key !== undefined && replies?.get(key) === h.known) replies.delete(key);
      h.act.#refuse(h.m, err);
    };
  }

  /**
   * Hands what the turn staged so far (events, reminders) and its idempotency record to the
   * journal as one append, chained after the appends still in flight; the turn's rollback
   * point moves past it. Throws (nothing issued) when the codec cannot encode an event.
   */
  #issue(idempotency: IdempotencyRecord | undefined): void {
    // Every activation holds an epoch from its claim before its first turn.
    if (this.#epoch === undefined) throw new InternalError(`${this.key} has no epoch`);
    const staged = this.#staged;
    const reminders = this.#reminders;
    const cancels = this.#cancels;
    const outbox = this.#outbox;
    const storage = this.#host.storage;
    // (map makes the list: a literal's allocation site could be pretenured, see AppendOf)
    const versions = this.def.eventVersions;
    const events: NewEvent[] = staged.map((e) =>
      new EventOf(e.type, versions[e.type] ?? 1, storage.encode(e.payload), e.at)
    );
    let snapshot: Snapshot | undefined;
    if (events.length > 0 && this.seq - this.#snapshotSeq >= this.def.snapshotEvery) {
      snapshot = {
        seq: this.seq,
        version: this.def.snapshotVersion,
        state: storage.encode(this.state),
      };
      this.#snapshotSeq = this.seq;
    }
    // (fields added one by one: spreads of `{}` would make an object each)
    const append = new AppendOf(this.key, this.#epoch, this.#baseSeq, events);
    if (snapshot) append.snapshot = snapshot;
    if (idempotency) append.idempotency = idempotency;
    if (reminders.length > 0) append.reminders = reminders;
    if (cancels.length > 0) append.cancelReminders = cancels;
    if (outbox.length > 0) append.outbox = outbox;
    this.#staged = NONE as never;
    this.#reminders = NONE as never;
    this.#cancels = NONE as never;
    this.#outbox = NONE as never;
    this.#base = this.state;
    this.#baseSeq = this.seq;
    const rec = new InFlight(reminders, outbox);
    if (this.#inFlight.length === 0) this.#inFlight = [rec];
    else this.#inFlight.push(rec);
    this.#host.journal.append(append).then(
      () => this.#settle(rec, undefined),
      (err) => this.#settle(rec, err ?? new InternalError("journal append failed")),
    );
  }

  /** The journal answered an append: release what is durable now, in order. */
  #settle(rec: InFlight, error: unknown): void {
    rec.done = true;
    rec.error = error;
    const inFlight = this.#inFlight;
    while (inFlight.length > 0 && inFlight[0]!.done) {
      const r = inFlight.shift()!;
      // The list lets go of its outputs once released (see AppendOf: a list that V8 placed in
      // the old generation would keep them from young collections).
      const first = r.first;
      const held = r.held;
      r.first = undefined;
      r.held = undefined;
      if (r.error !== undefined) this.#commitFailed(r.error);
      const failure = this.#failure;
      if (failure) {
        // Everything held behind a failed commit is refused (the activation has stopped).
        first?.fail(failure);
        if (held) { for (const h of held) h.fail(failure); }
      } else {
        for (const m of r.reminders) this.#host.reminderScheduled(m.due);
        if (r.outbox.length > 0) this.#host.forwardOutbox?.(this.key, r.outbox);
        first?.ok();
        if (held) { for (const h of held) h.ok(); }
      }
      if (held) held.length = 0;
    }
    if (inFlight.length === 0 && this.#inFlight === inFlight) this.#inFlight = NONE as never;
  }

  /** Holds an output behind the appends in flight (released at once when there are none). */
  #hold(h: Held): void {
    if (this.#failure) return h.fail(this.#failure);
    const last = this.#inFlight[this.#inFlight.length - 1];
    if (!last) return h.ok();
    if (last.first === undefined) last.first = h;
    else if (last.held) last.held.push(h);
    else last.held = [h];
  }

  /** A promise of {@link #hold}: undefined when nothing is in flight. */
  #durable(): Promise<void> | undefined {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#inFlight.length === 0) return undefined;
    return new Promise((ok, fail) => this.#hold({ ok, fail }));
  }

  /**
   * What a message this turn sends must wait for (a commit point of the turn); the turn counts
   * as having effects.
   */
  outputGate(): Promise<void> | undefined {
    this.#sent++;
    return this.#commitPoint();
  }

  /**
   * A commit point inside the running turn: what it staged so far (events, reminders) goes to
   * the journal now. Returns what an output must wait for: that append and every one before
   * it; undefined when nothing is in flight. Rejects with the activation's failure if a commit
   * failed.
   */
  #commitPoint(): Promise<void> | undefined {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#journaled()) {
      if (this.status === "stopped" || this.#host.fenced()) {
        return Promise.reject(
          new Stopped(`${this.key} stopped on node "${this.#host.node}" before its turn committed`),
        );
      }
      try {
        this.#issue(undefined);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.#durable();
  }

  /** Refuses an output held behind a commit that failed. */
  #refuse(m: M, error: ActorError): void {
    if (error instanceof Stopped) m.drop(error);
    else m.reject(error);
  }

  #publish(publishes: readonly [string, unknown][]): void {
    if (publishes.length === 0) return;
    for (const [topic, payload] of publishes) {
      this.#host.publish(topic, payload).catch((err) =>
        this.#host.log.warn(`Publish to "${topic}" from ${this.key} failed`, { error: String(err) })
      );
    }
  }

  /**
   * A commit failed: the activation stops (the next one rebuilds the actor from its log), and
   * every output still held behind it is refused with the error this returns to them.
   */
  #commitFailed(err: unknown): void {
    if (this.#failure) return;
    this.#failure = this.#commitError(err);
  }

  async #streamTurn(m: M, gen: unknown): Promise<void> {
    const sink = m.sink!;
    try {
      await pumpStream(
        this.#host.clock,
        gen as AsyncIterator<unknown> | Iterator<unknown>,
        sink,
        m.deadline,
        async () => {
          // What this step emitted is durable, with everything before it, before its item
          // leaves; its publishes leave with it.
          const publishes = this.#publishes;
          this.#publishes = NONE as never;
          const gate = this.#commitPoint();
          if (gate) await gate;
          this.#publish(publishes);
        },
      );
    } catch (err) {
      this.#rollback();
      sink.error(
        err instanceof ActorError && (err === this.#failure || err instanceof Stopped)
          ? err
          : callerError(err, this.#host.log, `${this.key}.${m.handler}`),
      );
    }
    m.resolve(undefined);
  }

  /** Drops what the running turn staged since its last commit point. */
  #rollback(): void {
    this.state = this.#base;
    this.seq = this.#baseSeq;
    this.#staged = NONE as never;
    this.#reminders = NONE as never;
    this.#cancels = NONE as never;
    this.#outbox = NONE as never;
    this.#publishes = NONE as never;
  }

  /** Whether the running turn staged anything that goes to the journal with its commit. */
  #journaled(): boolean {
    return this.#staged.length > 0 || this.#reminders.length > 0 || this.#cancels.length > 0 ||
      this.#outbox.length > 0;
  }

  #commitError(err: unknown): ActorError {
    const original = err;
    if (original instanceof Stopped) return original;
    this.#stop();
    if (original instanceof ConflictError) {
      return new UnavailableError(
        `${this.key} was activated elsewhere; this activation stopped (${original.message})`,
        { cause: original },
      );
    }
    if (original instanceof ActorError && original.code !== "internal") return original;
    this.#host.log.error(`Journal write of ${this.key} failed; activation ends`, {
      error: String(original),
    });
    return new UnavailableError(`Journal write of ${this.key} failed`, { cause: original });
  }

  /** Waits until every append handed to the journal settled, or until `until` (monotonic ms). */
  async #settled(until: number): Promise<void> {
    const durable = this.#durable();
    if (!durable) return;
    const clock = this.#host.clock;
    let timer: TimerId | undefined;
    await Promise.race([
      durable.catch(() => {}),
      new Promise<void>((resolve) =>
        timer = clock.setTimeout(() => resolve(), Math.max(0, until - clock.monotonic()))
      ),
    ]);
    clock.clearTimeout(timer);
  }

  /** Runs `onActivate`/`onPassivate` as a turn of its own, bounded by `deadline`. */
  async #hook(
    hook: (ctx: Context<unknown, Record<string, unknown>>) => unknown,
    deadline = this.#host.clock.monotonic() + 30_000,
  ): Promise<void> {
    const m: Envelope = {
      kind: "tell",
      handler: "",
      payload: undefined,
      deadline,
      chain: [],
      caller: undefined,
      idempotencyKey: undefined,
      resolve() {},
      reject() {},
      accept() {},
      drop() {},
    };
    this.#base = this.state;
    this.#baseSeq = this.seq;
    this.#sent = 0;
    const ctx = new TurnContext(this, m, this.#host, `${this.key}#hook`);
    try {
      await withDeadline(
        this.#host.clock,
        hook(ctx as unknown as Context<unknown, Record<string, unknown>>),
        deadline,
        () => new TimeoutError(`A lifecycle hook of ${this.key} did not end in time`),
      );
    } catch (err) {
      this.#rollback();
      throw err;
    }
    const publishes = this.#publishes;
    this.#publishes = NONE as never;
    const gate = this.#commitPoint();
    if (gate) await gate;
    this.#publish(publishes);
  }

  /** Stages an event (called by ctx.emit). */
  emit(type: string, payload: unknown): void {
    const reducer = this.def.events[type];
    if (!reducer) throw new TypeError(`Actor type "${this.def.name}" has no event "${type}"`);
    this.state = reducer(this.state, payload);
    this.seq++;
    const staged = new Staged(type, payload, this.#host.clock.now());
    // an array of one to start (most turns emit one event)
    if (this.#staged.length === 0) this.#staged = [staged];
    else this.#staged.push(staged);
  }

  /** Stages a reminder (one with the id of another staged in this turn replaces it). */
  schedule(reminder: Reminder): void {
    if (this.#reminders.length === 0) this.#reminders = [];
    else this.#reminders = this.#reminders.filter((r) => r.id !== reminder.id);
    this.#reminders.push(reminder);
    if (this.#cancels.length > 0) this.#cancels = this.#cancels.filter((id) => id !== reminder.id);
  }

  /** Stages the cancellation of a reminder. */
  cancel(id: string): void {
    if (this.#cancels.length === 0) this.#cancels = [];
    this.#cancels.push(id);
    // A reminder scheduled earlier in this very turn under that id is cancelled too.
    if (this.#reminders.length > 0) this.#reminders = this.#reminders.filter((r) => r.id !== id);
  }

  /**
   * Stages a publish: sent once the turn is durable; `durable`: stored with the turn's events
   * (the outbox) and forwarded to the durable topic after the commit.
   */
  stagePublish(topic: string, payload: unknown, durable = false): void {
    if (!durable) {
      if (this.#publishes.length === 0) this.#publishes = [[topic, payload]];
      else this.#publishes.push([topic, payload]);
      return;
    }
    if (!isValidSubject(topic)) {
      throw new TypeError(`Topic "${topic.slice(0, 80)}" is not valid (dot-separated tokens)`);
    }
    if (this.#outbox.length === 0) this.#outbox = [];
    const storage = this.#host.storage;
    this.#outbox.push({
      id: crypto.randomUUID(),
      topic,
      data: storage.encode(payload),
      contentType: storage.contentType,
      at: this.#host.clock.now(),
    });
  }

  /**
   * Where this activation's turns send messages (`ctx.ref`, `ctx.self`): each leaves once the
   * events its turn emitted before it, and everything before them, are durable.
   */
  get outputs(): Dispatcher {
    return this.#outputs ??= gatedDispatcher(this.#host.dispatcher, () => this.outputGate());
  }

  /**
   * Passivates: drains the mailbox, runs `onPassivate`, stops. With `graceful` false (lease
   * lost) it stops at once without the hook. Bounded: after `drainMs` the rest of the mailbox
   * is handed on; the running turn gets `drainMs` more, then it is abandoned (its caller gets
   * `unavailable`, and it can commit nothing). Commits in flight end before it stops.
   */
  async passivate(graceful = true, drainMs = 30_000): Promise<void> {
    if (this.status === "stopping" || this.status === "stopped") return this.stoppedPromise;
    if (!graceful) return this.#stop();
    const clock = this.#host.clock;
    const until = clock.monotonic() + drainMs;
    if (this.status === "starting") await this.ready.catch(() => {}); // recovery is bounded
    // Drain the mailbox first (each message is bounded by its deadline, and the whole drain by
    // `drainMs`: actors that keep messaging each other cannot hold a shutdown forever).
    while (
      this.status === "active" && (this.#running || this.queued > 0) && clock.monotonic() < until
    ) {
      await this.#loopEnd(until);
    }
    if (this.status !== "active") return this.stoppedPromise;
    this.status = "stopping"; // the turn loop ends after its current turn
    // The running turn gets one more bound of its own before it is abandoned.
    if (this.#running) await this.#loopEnd(Math.max(until, clock.monotonic()) + drainMs);
    if (this.#running) {
      this.#host.log.warn(`A turn of ${this.key} outlived the shutdown bound; abandoned`, {
        handler: this.#current?.handler,
      });
      this.#current?.reject(
        new UnavailableError(`${this.key} stopped while its turn was still running`),
      );
      return this.#stop();
    }
    try {
      if (this.def.onPassivate) await this.#hook(this.def.onPassivate, until);
    } catch (err) {
      this.#host.log.warn(`onPassivate of ${this.key} failed`, { error: String(err) });
    }
    // The replies of the last turns leave when their commits end (bounded like the drain).
    await this.#settled(Math.max(until, clock.monotonic() + 1000));
    return this.#stop();
  }

  /** Stops; what is left in the mailbox is handed back to the node. */
  #stop(): Promise<void> {
    if (this.status === "stopped") return this.stoppedPromise;
    this.status = "stopped";
    const leftover = this.#drainQueue();
    this.#stoppedResolve();
    this.#host.stopped(this, leftover);
    return this.stoppedPromise;
  }

  /** The message being handled now (for ctx). */
  get current(): M | undefined {
    return this.#current;
  }
}
