/**
 * One activation of an actor on this node: a bounded mailbox, one turn at a time, recovery
 * from snapshot + events, durable commit before replies, passivation.
 *
 * @module
 */

import type { Codec } from "../codec/types.ts";
import {
  ActorError,
  ConflictError,
  DeadlockError,
  InternalError,
  OverloadedError,
  TimeoutError,
  UnavailableError,
} from "../errors.ts";
import type { Journal, NewEvent, Reminder, Snapshot, StoredEvent } from "../journal/types.ts";
import { isPromiseLike, type TimerWheel } from "../util/async.ts";
import type { ActorDefinition, AnyActorTypes } from "./define.ts";
import type { Context } from "./context.ts";
import type { Envelope, Logger } from "./envelope.ts";
import { pumpStream } from "./stream.ts";
import type { Dispatcher } from "./ref.ts";
import { TurnContext } from "./turn_context.ts";

/** What an activation needs from its node. */
export interface ActivationHost {
  /** This node's id. */
  readonly node: string;
  /** The journal. */
  readonly journal: Journal;
  /** Codec for stored events, snapshots and replies. */
  readonly storage: Codec;
  /** Sends messages (for `ctx.ref`). */
  readonly dispatcher: Dispatcher;
  /** Logs. */
  readonly log: Logger;
  /** Deadlines. */
  readonly wheel: TimerWheel;
  /** Publishes a pub/sub message (after commit). */
  publish(topic: string, payload: unknown): Promise<void>;
  /** Whether this node may not process messages now (its lease lapsed). */
  fenced(): boolean;
  /**
   * Called once when the activation has stopped; `leftover` messages need a new home
   * (`owner`: the node that owns the actor, when the claim found one).
   */
  stopped(activation: Activation, leftover: Envelope[], owner?: string): void;
  /** Claims ownership of the actor cluster-wide; throws {@link Redirect} when owned elsewhere. */
  claim(activation: Activation): Promise<void>;
  /** A reminder was committed. */
  reminderScheduled(due: number): void;
}

/** Thrown by `host.claim()`: the actor is active on another node. */
export class Redirect extends Error {
  constructor(readonly owner: string) {
    super(`Actor is owned by node "${owner}"`);
  }
}

/** Thrown by a journal write: ends the activation. */
class JournalFailure extends Error {
  constructor(readonly original: unknown) {
    super("Journal write failed", { cause: original });
  }
}

interface Staged {
  type: string;
  payload: unknown;
  at: number;
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

/** One activation. */
export class Activation {
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
  lastActive = performance.now();
  /** Resolves when started (rejects if recovery failed). */
  readonly ready: Promise<void>;

  readonly #host: ActivationHost;
  readonly #queue: Envelope[] = [];
  #head = 0;
  #running = false;
  #epoch: number | undefined;
  #snapshotSeq = 0;
  #turn = 0;
  #currentTurnId = "";
  #current: Envelope | undefined;
  #staged: Staged[] = [];
  #reminders: Reminder[] = [];
  #publishes: [string, unknown][] = [];
  #replies = new Map<string, unknown>();
  #stoppedResolve!: () => void;
  /** Resolves when stopped. */
  readonly stoppedPromise: Promise<void>;

  constructor(host: ActivationHost, def: ActorDefinition<AnyActorTypes>, id: string) {
    this.#host = host;
    this.def = def;
    this.id = id;
    this.key = `${def.name}/${id}`;
    this.state = def.initialState();
    this.stoppedPromise = new Promise((r) => this.#stoppedResolve = r);
    this.ready = this.#start();
    this.ready.catch(() => {});
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
      await this.#host.claim(this);
      if (this.def.eventSourced) {
        const rec = await this.#host.journal.activate(this.key);
        this.#epoch = rec.epoch;
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
      this.status = "active";
      this.#kick();
    } catch (err) {
      this.status = "stopped";
      if (err instanceof Redirect) {
        this.#stoppedResolve();
        this.#host.stopped(this, this.#drainQueue(), err.owner);
        throw err;
      }
      const error = err instanceof ActorError
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

  /** Queues a message; rejects it with `overloaded` when the mailbox is full. */
  enqueue(m: Envelope): void {
    if (this.status === "stopped") {
      this.#host.stopped(this, [m]);
      return;
    }
    if (this.queued >= this.def.mailboxSize) {
      m.reject(
        new OverloadedError(`Mailbox of ${this.key} is full (${this.def.mailboxSize} messages)`),
      );
      return;
    }
    if (m.chain.length > 0 && this.#running && m.chain.includes(this.#currentTurnId)) {
      m.reject(
        new DeadlockError(
          `Call chain came back to ${this.key}, which is busy waiting on it (${
            [...m.chain, this.key].join(" → ")
          })`,
        ),
      );
      return;
    }
    this.#queue.push(m);
    this.#kick();
  }

  #kick(): void {
    if (this.#running || this.status !== "active" || this.queued === 0) return;
    this.#running = true;
    void this.#drain();
  }

  #take(): Envelope | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const m = this.#queue[this.#head]!;
    this.#queue[this.#head++] = undefined as unknown as Envelope;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    return m;
  }

  #drainQueue(): Envelope[] {
    const rest = this.#queue.slice(this.#head);
    this.#queue.length = 0;
    this.#head = 0;
    return rest;
  }

  async #drain(): Promise<void> {
    try {
      let m: Envelope | undefined;
      while (this.status === "active" && (m = this.#take())) {
        if (performance.now() > m.deadline) {
          m.reject(new TimeoutError(`Message to ${this.key}.${m.handler} expired in the mailbox`));
          continue;
        }
        if (this.#host.fenced()) {
          m.reject(new UnavailableError(`Node lost its lease; ${this.key} is not processed here`));
          this.#stop(false);
          break;
        }
        const r = this.#turnOf(m);
        if (r) await r;
      }
    } finally {
      this.#running = false;
      this.lastActive = performance.now();
      if (this.status === "active" && this.queued > 0) this.#kick();
    }
  }

  /** Runs one message; returns a promise only when it has to wait. */
  #turnOf(m: Envelope): Promise<void> | undefined {
    this.#turn++;
    this.#currentTurnId = `${this.key}#${this.#turn}`;
    this.#current = m;
    if (m.idempotencyKey !== undefined) return this.#idempotentTurn(m, m.idempotencyKey);
    return this.#run(m);
  }

  async #idempotentTurn(m: Envelope, key: string): Promise<void> {
    if (this.#replies.has(key)) return m.resolve(this.#replies.get(key));
    try {
      const stored = await this.#host.journal.reply(this.key, key);
      if (stored !== undefined) {
        const value = this.#host.storage.decode(stored);
        this.#remember(key, value);
        return m.resolve(value);
      }
    } catch (err) {
      return m.reject(new UnavailableError(`Journal read failed for ${this.key}`, { cause: err }));
    }
    await this.#run(m);
  }

  #remember(key: string, value: unknown): void {
    this.#replies.set(key, value);
    if (this.#replies.size > IDEMPOTENCY_CACHE) {
      this.#replies.delete(this.#replies.keys().next().value!);
    }
  }

  #run(m: Envelope): Promise<void> | undefined {
    const before = this.state;
    const beforeSeq = this.seq;
    const ctx = new TurnContext(this, m, this.#host, this.#currentTurnId);
    let result: unknown;
    try {
      const fn = this.def.handlers[m.handler]!;
      result = fn(ctx, m.payload);
    } catch (err) {
      this.#rollback(before, beforeSeq);
      m.reject(callerError(err, this.#host.log, `${this.key}.${m.handler}`));
      return undefined;
    }
    if (m.kind === "stream") return this.#streamTurn(m, result, before, beforeSeq);
    if (!isPromiseLike(result) && !this.#dirty(m.idempotencyKey)) {
      m.resolve(result);
      return undefined;
    }
    return this.#finish(m, result, before, beforeSeq);
  }

  #dirty(idempotencyKey: string | undefined): boolean {
    return this.#staged.length > 0 || this.#reminders.length > 0 || this.#publishes.length > 0 ||
      idempotencyKey !== undefined;
  }

  async #finish(m: Envelope, pending: unknown, before: unknown, beforeSeq: number): Promise<void> {
    let result: unknown;
    try {
      result = await pending;
    } catch (err) {
      this.#rollback(before, beforeSeq);
      m.reject(callerError(err, this.#host.log, `${this.key}.${m.handler}`));
      return;
    }
    try {
      await this.#commit(beforeSeq, m.idempotencyKey, result);
    } catch (err) {
      this.#rollback(before, beforeSeq);
      m.reject(this.#commitError(err));
      return;
    }
    if (m.idempotencyKey !== undefined) this.#remember(m.idempotencyKey, result);
    m.resolve(result);
  }

  async #streamTurn(
    m: Envelope,
    gen: unknown,
    before: unknown,
    beforeSeq: number,
  ): Promise<void> {
    const sink = m.sink!;
    let base = beforeSeq;
    let snapshot = before;
    try {
      await pumpStream(gen as AsyncIterator<unknown> | Iterator<unknown>, sink, async () => {
        // Events emitted by this step are durable before its item leaves.
        if (this.#dirty(undefined)) {
          await this.#commit(base, undefined, undefined);
          base = this.seq;
          snapshot = this.state;
        }
      });
    } catch (err) {
      this.#rollback(snapshot, base);
      sink.error(
        err instanceof JournalFailure
          ? this.#commitError(err)
          : callerError(err, this.#host.log, `${this.key}.${m.handler}`),
      );
    }
    m.resolve(undefined);
  }

  #rollback(state: unknown, seq: number): void {
    this.state = state;
    this.seq = seq;
    this.#staged = [];
    this.#reminders = [];
    this.#publishes = [];
  }

  #commitError(err: unknown): ActorError {
    const original = err instanceof JournalFailure ? err.original : err;
    this.#stop(false);
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

  /** Appends staged events etc.; throws {@link JournalFailure}. */
  async #commit(expectedSeq: number, idemKey: string | undefined, reply: unknown): Promise<void> {
    const staged = this.#staged;
    const reminders = this.#reminders;
    const publishes = this.#publishes;
    this.#staged = [];
    this.#reminders = [];
    this.#publishes = [];
    const needsJournal = staged.length > 0 || reminders.length > 0 || idemKey !== undefined;
    if (needsJournal) {
      const storage = this.#host.storage;
      try {
        if (this.#epoch === undefined) {
          this.#epoch = (await this.#host.journal.activate(this.key)).epoch;
        }
        const events: NewEvent[] = staged.map((e) => ({
          type: e.type,
          version: this.def.eventVersions[e.type] ?? 1,
          data: storage.encode(e.payload),
          at: e.at,
        }));
        let snapshot: Snapshot | undefined;
        if (events.length > 0 && this.seq - this.#snapshotSeq >= this.def.snapshotEvery) {
          snapshot = {
            seq: this.seq,
            version: this.def.snapshotVersion,
            state: storage.encode(this.state),
          };
        }
        await this.#host.journal.append({
          actor: this.key,
          epoch: this.#epoch,
          expectedSeq,
          events,
          ...(snapshot ? { snapshot } : {}),
          ...(idemKey !== undefined
            ? { idempotency: { key: idemKey, reply: storage.encode(reply) } }
            : {}),
          ...(reminders.length > 0 ? { reminders } : {}),
        });
        if (snapshot) this.#snapshotSeq = snapshot.seq;
      } catch (err) {
        throw new JournalFailure(err);
      }
      for (const r of reminders) this.#host.reminderScheduled(r.due);
    }
    for (const [topic, payload] of publishes) {
      this.#host.publish(topic, payload).catch((err) =>
        this.#host.log.warn(`Publish to "${topic}" from ${this.key} failed`, { error: String(err) })
      );
    }
  }

  async #hook(hook: (ctx: Context<unknown, Record<string, unknown>>) => unknown): Promise<void> {
    const m: Envelope = {
      kind: "tell",
      handler: "",
      payload: undefined,
      deadline: performance.now() + 30_000,
      chain: [],
      resolve() {},
      reject() {},
    };
    const before = this.state;
    const beforeSeq = this.seq;
    const ctx = new TurnContext(this, m, this.#host, `${this.key}#hook`);
    try {
      await hook(ctx as unknown as Context<unknown, Record<string, unknown>>);
      await this.#commit(beforeSeq, undefined, undefined);
    } catch (err) {
      this.#rollback(before, beforeSeq);
      throw err;
    }
  }

  /** Stages an event (called by ctx.emit). */
  emit(type: string, payload: unknown): void {
    const reducer = this.def.events[type];
    if (!reducer) throw new TypeError(`Actor type "${this.def.name}" has no event "${type}"`);
    this.state = reducer(this.state, payload);
    this.seq++;
    this.#staged.push({ type, payload, at: Date.now() });
  }

  /** Stages a reminder. */
  schedule(reminder: Reminder): void {
    this.#reminders.push(reminder);
  }

  /** Stages a publish. */
  stagePublish(topic: string, payload: unknown): void {
    this.#publishes.push([topic, payload]);
  }

  /**
   * Passivates: waits for the running turn, runs `onPassivate`, stops. With `graceful`
   * false (lease lost, journal failure) it stops at once without the hook.
   */
  async passivate(graceful = true, drainMs = 30_000): Promise<void> {
    if (this.status === "stopping" || this.status === "stopped") return this.stoppedPromise;
    if (!graceful) return this.#stop(false);
    if (this.status === "starting") await this.ready.catch(() => {}); // recovery is bounded
    // Drain the mailbox first (each message is bounded by its deadline, and the whole drain by
    // `drainMs`: actors that keep messaging each other cannot hold a shutdown forever).
    const until = performance.now() + drainMs;
    while (
      this.status === "active" && (this.#running || this.queued > 0) && performance.now() < until
    ) {
      await new Promise((r) => setTimeout(r, 2));
    }
    if (this.status !== "active") return this.stoppedPromise;
    this.status = "stopping"; // the drain loop ends after its current turn
    while (this.#running) await new Promise((r) => setTimeout(r, 2)); // bounded by its deadline
    try {
      if (this.def.onPassivate) await this.#hook(this.def.onPassivate);
    } catch (err) {
      this.#host.log.warn(`onPassivate of ${this.key} failed`, { error: String(err) });
    }
    this.#stop(true);
    return this.stoppedPromise;
  }

  #stop(_graceful: boolean): Promise<void> {
    if (this.status === "stopped") return this.stoppedPromise;
    this.status = "stopped";
    const leftover = this.#drainQueue();
    this.#stoppedResolve();
    this.#host.stopped(this, leftover);
    return this.stoppedPromise;
  }

  /** The message being handled now (for ctx). */
  get current(): Envelope | undefined {
    return this.#current;
  }
}

/** Applies the upcasters from `version` to the definition's current version. */
export function upcast(
  def: ActorDefinition<AnyActorTypes>,
  type: string,
  version: number,
  payload: unknown,
): unknown {
  const chain = def.upcasters[type];
  const current = def.eventVersions[type] ?? 1;
  let p = payload;
  for (let v = version; v < current; v++) {
    const up = chain?.[v];
    if (!up) throw new InternalError(`No upcaster for event "${type}" from version ${v}`);
    p = up(p);
  }
  return p;
}
