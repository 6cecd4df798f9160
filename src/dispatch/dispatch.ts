/**
 * The message path of one node, in the order a message takes it:
 *
 * 1. **Call** (`send`, `stream`): a ref's ask, tell or stream becomes a {@link Call}, a
 *    settle-once object holding the message, its deadline and how it answers its caller. The
 *    caller's side refuses what can never be sent (a closed node, an id too long for a
 *    subject, a payload over the limit, a bad timeout).
 * 2. **Route** (`route`): the {@link Router} (router.ts), the one routing authority, decides:
 *    this node (local delivery), or another node (remote routing, {@link Remote}, route.ts).
 * 3. **Local delivery** ({@link Local}, local.ts): the one check every message passes before
 *    its handler runs (admit.ts), then the activation's mailbox or the worker pool. A new
 *    activation claims its actor; when another live node owns it, what it queued is redirected.
 * 4. **Serve** ({@link Server}, serve.ts): requests from other nodes become calls whose
 *    settlement answers over the mesh (a redirect included), and go to step 3.
 *
 * @module
 */

import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import type { Logger, StreamSink } from "../actor/envelope.ts";
import type {
  ActorStream,
  AskOptions,
  CallOrigin,
  Dispatcher,
  StreamOptions,
} from "../actor/ref.ts";
import { pumpStream, StreamChannel } from "../actor/stream.ts";
import { sizeLowerBound } from "../codec/size.ts";
import { msgpack } from "../codec/msgpack.ts";
import type { Codec } from "../codec/types.ts";
import type { ConfigView } from "../config/types.ts";
import type { Membership } from "../directory/membership.ts";
import type { Ownership } from "../directory/ownership.ts";
import { Activations } from "../directory/activations.ts";
import { ActorError, BadPayloadError, ClosedError, TimeoutError } from "../errors.ts";
import type { Journal, OutboxMessage } from "../journal/types.ts";
import { type MeshConnection, MeshError } from "../mesh/types.ts";
import { MAX_TIMEOUT_MS } from "../mesh/wire.ts";
import { activity, type NodeObserver, type Sent } from "../observe/node.ts";
import type { TypeGauge } from "../observe/metrics.ts";
import type { TimerWheel } from "../util/async.ts";
import type { Clock, TimerId } from "../util/clock.ts";
import { checkIdempotencyKey, checkTarget } from "./admit.ts";
import { Call, type CallInit, type Settlement } from "./call.ts";
import { Access, type NodeAuth } from "./access.ts";
import type { Decision } from "../auth/access.ts";
import { Local } from "./local.ts";
import { PubSub, type TopicHandler, type TopicOptions, type TopicSubscription } from "./pubsub.ts";
import type { DurablePublish } from "./outbox.ts";
import { Remote } from "./route.ts";
import { Router } from "./router.ts";
import { Server } from "./serve.ts";
import { type Subjects, subjects } from "./subjects.ts";

/** The chain of a call made outside any turn (shared: never changed). */
const NO_CHAIN: readonly string[] = Object.freeze([]);

/** What the message path needs from its node. */
export interface DispatchDeps {
  readonly node: string;
  readonly prefix: string;
  readonly conn: MeshConnection;
  readonly membership: Membership;
  readonly ownership: Ownership;
  readonly journal: Journal;
  /** Codec of stored events, snapshots and replies. */
  readonly storage: Codec;
  /** Codec of messages this node sends. */
  readonly wireCodec: Codec;
  readonly log: Logger;
  /** The node's clock: every deadline and timer of the path. */
  readonly clock: Clock;
  /** Call deadlines (on {@link clock}). */
  readonly wheel: TimerWheel;
  /** Traces, metrics and the node's counts (src/observe). */
  readonly observer: NodeObserver;
  /** Largest payload sent or accepted, bytes. */
  readonly maxPayload: number;
  /** Default ask timeout, ms. */
  readonly askTimeout: number;
  /** Most activations on this node. */
  readonly maxActivations: number;
  /** Auth, when the node has it on. */
  readonly auth?: NodeAuth | undefined;
  /** Inbox prefixes replies and stream frames may go to. */
  readonly replyPrefixes: readonly string[];
  /** Types this node hosts. */
  readonly defs: ReadonlyMap<string, ActorDefinition<AnyActorTypes>>;
  /** A reminder was committed. */
  reminderScheduled(due: number): void;
  /** A turn's outbox messages are durable: forward them. */
  forwardOutbox?(actor: string, messages: readonly OutboxMessage[]): void;
  /** The node's config as it is now. */
  configView(): ConfigView;
}

/** Where the node is in its life (see {@link Dispatch.phase}). */
export type Phase = "open" | "draining" | "closed";

/** The message path of one node: see the module doc. */
export class Dispatch implements Dispatcher {
  readonly router: Router;
  readonly local: Local;
  readonly remote: Remote;
  readonly server: Server;
  /** The actors active here, and the cluster-wide view of them (`directory.watch()`). */
  readonly activations: Activations;
  /** Who may call what, and who may use which topic. */
  readonly access: Access;
  readonly #deps: DispatchDeps;
  readonly #subjects: Subjects;
  /** Pub/sub: plain and durable topics (`pubsub.ts`, `durable.ts`). */
  readonly pubsub: PubSub;
  #phase: Phase = "open";
  #idleTimer: TimerId | undefined;
  #unfence: (() => void) | undefined;

  constructor(deps: DispatchDeps) {
    this.#deps = deps;
    this.#subjects = subjects(deps.prefix);
    this.access = new Access(deps.auth, deps.clock);
    this.pubsub = new PubSub({
      ...pick(deps),
      conn: deps.conn,
      subjects: this.#subjects,
      wireCodec: deps.wireCodec,
    });
    this.local = new Local({
      ...pick(deps),
      ownership: deps.ownership,
      maxActivations: deps.maxActivations,
      access: this.access,
      journal: deps.journal,
      storage: deps.storage,
      dispatcher: this,
      wheel: deps.wheel,
      observer: deps.observer,
      publish: (topic, payload) => this.publish(topic, payload),
      fenced: (now) => deps.membership.isFenced(now),
      phase: () => this.#phase,
      reminderScheduled: (due) => deps.reminderScheduled(due),
      forwardOutbox: (actor, messages) => deps.forwardOutbox?.(actor, messages),
      configView: () => deps.configView(),
      activated: (act) => this.activations.activated(act.def.name, act.id),
      deactivated: (act) => this.activations.deactivated(act.def.name, act.id),
      reroute: (call, owner) => {
        if (owner) this.router.redirected(call.key, owner.node, owner.revision);
        this.route(call);
      },
    }, deps.defs);
    this.router = new Router({
      node: deps.node,
      membership: deps.membership,
      defs: deps.defs,
      isLocal: (call) => this.local.has(call),
    });
    this.activations = new Activations({
      conn: deps.conn,
      membership: deps.membership,
      subjects: this.#subjects,
      codec: msgpack,
      active: () => this.local.active(),
      locate: (type, id) => this.locate(type, id),
    });
    const mesh = {
      ...pick(deps),
      conn: deps.conn,
      subjects: this.#subjects,
      replyPrefixes: deps.replyPrefixes,
      membership: deps.membership,
    };
    this.remote = new Remote({
      ...mesh,
      router: this.router,
      wireCodec: deps.wireCodec,
      deliverHere: (call) => this.#deliverHere(call),
    });
    this.server = new Server({
      ...mesh,
      defs: deps.defs,
      deliver: (call) => this.local.deliver(call),
    });
  }

  /** `open`; `draining` (only running turns may still send); `closed`. */
  get phase(): Phase {
    return this.#phase;
  }

  /**
   * Starts serving requests from other nodes, passivating idle actors, and dropping every
   * activation at once when the node loses its lease (fenced).
   */
  start(): Promise<void> {
    const d = this.#deps;
    this.#unfence = d.membership.on((e) => {
      if (e.type === "fenced") {
        d.log.warn("Node lost its lease: dropping its activations", { reason: e.reason });
        this.local.dropAll();
      }
    });
    const idle = Math.min(...[...d.defs.values()].map((def) => def.idleAfter), 60_000);
    this.#idleTimer = d.clock.setInterval(
      () => this.local.sweepIdle(),
      Math.max(10, Math.min(1000, idle / 2)),
    );
    this.activations.start();
    return this.server.start();
  }

  // ---- what the node reports ----

  /** Activations and queued messages per hosted type, now (for the observer's gauges). */
  activity(): TypeGauge[] {
    return activity(this.local, this.#deps.defs.keys());
  }

  /** The seq and queue of actor `type/id` when it is active here, else undefined. */
  activeActor(type: string, id: string): { seq: number; queued: number } | undefined {
    const act = this.local.activations.get(`${type}/${id}`);
    return act?.status === "active" ? { seq: act.seq, queued: act.queued } : undefined;
  }

  /** Which rule would decide a call, as local delivery decides it (see {@link Access.explain}). */
  explain(
    def: ActorDefinition<AnyActorTypes>,
    handler: string,
    options: { id?: string; token?: string },
  ): Promise<Decision> {
    return this.access.explain(def, handler, options);
  }

  // ---- 1. the call ----

  /** Sends an ask or tell: the reply, or (tell) acceptance by the mailbox. */
  send(
    type: string,
    id: string,
    kind: "ask" | "tell",
    handler: string,
    payload: unknown,
    options: AskOptions | undefined,
    origin: CallOrigin | undefined,
    key?: string,
  ): Promise<unknown> {
    let init: CallInit;
    try {
      init = this.#init(type, id, kind, handler, payload, options, origin, undefined, key);
    } catch (err) {
      return Promise.reject(err);
    }
    const sent = this.#deps.observer.send(init); // undefined when OpenTelemetry is off
    return new Promise((resolve, reject) => {
      const caller = new CallerSide(init, resolve, reject, this.#deps, sent);
      const call = new Call(sent?.init ?? init, caller);
      const signal = options?.signal;
      if (signal) {
        if (signal.aborted) return call.reject(signal.reason);
        caller.listen(signal, call);
      }
      this.route(call);
    });
  }

  /** Opens a stream from a streaming handler. */
  stream(
    type: string,
    id: string,
    handler: string,
    payload: unknown,
    options: StreamOptions | undefined,
    origin: CallOrigin | undefined,
  ): ActorStream<unknown> {
    const channel = new StreamChannel(options?.window ?? 16);
    let init: CallInit;
    try {
      init = this.#init(type, id, "stream", handler, payload, options, origin, channel);
    } catch (err) {
      channel.error(err);
      return channel;
    }
    const signal = options?.signal;
    if (signal?.aborted) {
      channel.error(signal.reason);
      return channel;
    }
    signal?.addEventListener("abort", () => channel.abort(signal.reason), { once: true });
    // A consumer that stops reading stops the caller's input stream too.
    if (init.input) channel.signal.addEventListener("abort", () => init.input!.cancel());
    const { observer } = this.#deps;
    const sent = observer.send(init); // undefined when OpenTelemetry is off
    this.route(
      new Call(sent?.init ?? init, {
        accepted: () => observer.sent(sent, init),
        resolve() {},
        reject: (err) => {
          observer.sent(sent, init, err);
          init.input?.cancel();
          channel.error(err);
        },
      }),
    );
    return channel;
  }

  /** The caller-side checks, and the call's data. Throws what the caller gets. */
  #init(
    type: string,
    id: string,
    kind: CallInit["kind"],
    handler: string,
    payload: unknown,
    options: AskOptions | undefined,
    origin: CallOrigin | undefined,
    sink?: StreamChannel,
    key?: string,
  ): CallInit {
    // Once shutdown began, only the turns still running may send (their nested calls).
    if (this.#phase === "closed" || (!origin && this.#phase !== "open")) {
      throw new ClosedError("The system is closed");
    }
    const bad = checkTarget(type, id) ?? checkIdempotencyKey(options?.idempotencyKey);
    if (bad) throw bad;
    const token = options?.token ?? origin?.token;
    const timeout = resolveTimeout(options?.timeout, this.#deps.askTimeout);
    let deadline = this.#deps.clock.monotonic() + timeout;
    if (origin && origin.deadline < deadline) deadline = origin.deadline;
    // An (async) iterable payload is the caller's input stream: sent item by item, with flow
    // control, to the handler, which reads it as an AsyncIterable. (A payload's size is bounded
    // where it goes: encoded for the mesh, or without encoding by local delivery.)
    const input = isStreamSource(payload)
      ? openInput(
        this.#deps.clock,
        payload,
        (options as StreamOptions | undefined)?.window ?? 16,
        deadline,
      )
      : undefined;
    // (fields added one by one: spreads of `{}` would make an object each)
    const init: { -readonly [K in keyof CallInit]: CallInit[K] } = new LocalCall(
      kind,
      type,
      id,
      handler,
      input ?? payload,
      deadline,
      origin?.chain ?? NO_CHAIN,
    );
    if (input) init.input = input;
    if (token !== undefined) init.token = token;
    if (origin?.from !== undefined) init.from = origin.from;
    if (options?.idempotencyKey !== undefined) init.idempotencyKey = options.idempotencyKey;
    if (sink) init.sink = sink;
    if (key !== undefined) init.key = key;
    return init;
  }

  // ---- 2. the route ----

  /** Where the router says: local delivery, or remote routing. */
  route(call: Call): void {
    if (this.#phase === "closed") return call.reject(new ClosedError("The system is closed"));
    const decision = this.router.decide(call);
    if (decision.to === "local") return this.#deliverHere(call);
    if (decision.to === "none" && decision.error) return call.reject(decision.error);
    this.remote.send(call, decision);
  }

  /**
   * Local delivery. A call made here gets its deadline timer now (unless a synchronous handler
   * already answered): nothing else bounds its wait in a mailbox. A call from the mesh is bounded
   * by its remote caller, and by the mailbox's check of its deadline.
   */
  #deliverHere(call: Call): void {
    this.local.deliver(call);
    if (!call.remote && !call.settled) call.expireOn(this.#deps.wheel, timedOut);
  }

  /**
   * The node where actor `type/id` runs now, or undefined: this node, else (for a type it
   * hosts) the owner recorded in the journal if alive, else what a host of the type says.
   */
  async locate(type: string, id: string): Promise<string | undefined> {
    if (this.local.isActive(type, id)) return this.#deps.node;
    if (this.#deps.defs.has(type)) return await this.#deps.ownership.locate(type, id);
    const host = this.router.placeOf(type, id);
    if (host === undefined) return undefined;
    try {
      return await this.activations.locateVia(host, type, id);
    } catch (err) {
      // That host is gone, or not answering yet: nobody can say where the actor runs now.
      if (err instanceof MeshError) return undefined;
      throw err;
    }
  }

  // ---- pub/sub ----

  /**
   * Publishes to a topic, at most once. With a token, its holder must be allowed to publish
   * there (a topic rule of the node's auth).
   */
  async publish(topic: string, payload: unknown, token?: string): Promise<void> {
    if (this.#phase === "closed") throw new ClosedError("The system is closed");
    if (token !== undefined) await this.access.topic(topic, "publish", token);
    return this.pubsub.publish(topic, payload);
  }

  /**
   * Stores a message on a durable topic; resolves once stored. With a token, as
   * {@link publish}.
   */
  async publishDurable(
    topic: string,
    payload: unknown,
    id: string | undefined,
    token?: string,
  ): Promise<void> {
    if (this.#phase === "closed") throw new ClosedError("The system is closed");
    if (token !== undefined) await this.access.topic(topic, "publish", token);
    await this.pubsub.publishDurable(topic, payload, id);
  }

  /**
   * How this node publishes a stored message to a durable topic (the outbox forwards with it),
   * or undefined when the mesh has no durable topics.
   */
  durablePublish(): DurablePublish | undefined {
    if (typeof this.#deps.conn.durableTopics !== "function") return undefined;
    return async (topic, data, contentType, id) => {
      await this.pubsub.publishEncoded(topic, data, contentType, id);
    };
  }

  /**
   * Subscribes to a topic pattern (plain, or durable: see `pubsub.ts`). With a token (and auth
   * on), nothing is delivered before the token is verified and a topic rule allows its holder
   * to subscribe; a refusal is logged and ends the subscription.
   */
  subscribe(
    topic: string,
    handler: TopicHandler,
    options: TopicOptions & { token?: string | undefined } = {},
  ): TopicSubscription {
    if (this.#phase === "closed") throw new ClosedError("The system is closed");
    const { token, ...rest } = options;
    const gate = token === undefined || !this.access.auth
      ? undefined
      : this.access.topic(topic, "subscribe", token);
    const sub = this.pubsub.subscribe(topic, handler, rest, gate);
    sub.ready.catch((err) => {
      if (gate) this.#deps.log.warn(`Subscription to "${topic}" refused`, { error: String(err) });
    });
    return sub;
  }

  // ---- lifecycle ----

  /**
   * Shutdown, first part: remote requests are answered `retry`, new local calls refused;
   * mailboxes and worker pools drain (running turns may still call out), bounded by `boundMs`.
   */
  async drain(boundMs: number): Promise<void> {
    if (this.#phase !== "open") return;
    // durable subscribers first: their handlers may still call actors
    await this.pubsub.drain(boundMs);
    this.#phase = "draining";
    this.#deps.clock.clearInterval(this.#idleTimer);
    this.server.stopAccepting();
    await this.local.drain(boundMs);
    this.server.drainedOut();
    this.#stopFenceWatch();
  }

  /** Drained (or closing): a lost lease has nothing left to drop. */
  #stopFenceWatch(): void {
    this.#unfence?.();
    this.#unfence = undefined;
  }

  /** Shutdown, last part: nothing more is sent or handled; subscriptions end. */
  async close(boundMs: number): Promise<void> {
    this.#phase = "closed";
    this.#deps.clock.clearInterval(this.#idleTimer);
    this.#stopFenceWatch();
    this.remote.close();
    this.router.close();
    this.activations.close();
    await this.server.close(boundMs);
  }
}

/**
 * Whether a payload is a stream the caller sends item by item: an async iterable, or a sync
 * iterator such as a generator. Arrays, strings, maps, sets and typed arrays are plain values.
 */
export function isStreamSource(
  value: unknown,
): value is AsyncIterable<unknown> | Iterable<unknown> {
  if (typeof value !== "object" || value === null) return false;
  if (Symbol.asyncIterator in value) return true;
  return Symbol.iterator in value && typeof (value as { next?: unknown }).next === "function";
}

/**
 * The caller's side of an input stream: a bounded channel (`window` items) fed from the
 * source, bounded by the call's deadline; cancelling the channel closes the source.
 */
function openInput(
  clock: Clock,
  source: AsyncIterable<unknown> | Iterable<unknown>,
  window: number,
  deadline: number,
): StreamChannel {
  const channel = new StreamChannel(window);
  const it = Symbol.asyncIterator in source
    ? (source as AsyncIterable<unknown>)[Symbol.asyncIterator]()
    : (source as Iterable<unknown>)[Symbol.iterator]();
  pumpStream(clock, it, channel, deadline).catch((err) =>
    channel.error(
      err instanceof ActorError
        ? err
        : new BadPayloadError(`The caller's input stream failed: ${String(err)}`, { cause: err }),
    )
  );
  return channel;
}

/** The error of a call whose deadline passed. */
function timedOut(call: Call): TimeoutError {
  return new TimeoutError(`${call.kind} ${call.target}.${call.handler} timed out`);
}

/**
 * How an ask or tell made on this node answers its caller's promise: a tell once a mailbox
 * accepted it, an ask with the reply (bounded like one that crossed the mesh) or the error.
 * One object per call, instead of a closure per outcome.
 */
class CallerSide implements Settlement {
  #answered = false;
  #signal: AbortSignal | undefined;
  #onAbort: (() => void) | undefined;

  constructor(
    readonly init: CallInit,
    readonly resolveFn: (value: unknown) => void,
    readonly rejectFn: (err: unknown) => void,
    readonly deps: DispatchDeps,
    readonly sent: Sent | undefined,
  ) {}

  /** Rejects `call` with the signal's reason when it aborts. */
  listen(signal: AbortSignal, call: Call): void {
    this.#signal = signal;
    this.#onAbort = () => call.reject(signal.reason);
    signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  #answer(err?: unknown): boolean {
    if (this.#answered) return false;
    this.#answered = true;
    this.deps.observer.sent(this.sent, this.init, err);
    if (this.#onAbort) this.#signal!.removeEventListener("abort", this.#onAbort);
    return true;
  }

  accepted(): void {
    if (this.init.kind === "tell" && this.#answer()) this.resolveFn(undefined);
  }

  resolve(value: unknown, fromWire?: boolean): void {
    if (this.#answered) return;
    const max = this.deps.maxPayload;
    // A local reply is bounded like one that crossed the mesh (that one was, by its size).
    const { kind, type, id, handler } = this.init;
    if (kind === "ask" && !fromWire && sizeLowerBound(value, max) > max) {
      const target = id === "" ? type : `${type}/${id}`;
      const err = new BadPayloadError(
        `Reply of ${target}.${handler} exceeds the limit of ${max} bytes`,
      );
      this.#answer(err);
      return this.rejectFn(err);
    }
    this.#answer();
    this.resolveFn(kind === "ask" ? value : undefined);
  }

  reject(err: unknown): void {
    this.init.input?.cancel(); // refused or failed: the caller's input stream stops
    if (this.#answer(err)) return this.rejectFn(err);
    this.deps.log.debug(`A ${this.init.kind} failed after it was accepted`, {
      error: String(err),
    });
  }
}

/** The fields every step shares. */
function pick(d: DispatchDeps): { node: string; log: Logger; maxPayload: number; clock: Clock } {
  return { node: d.node, log: d.log, maxPayload: d.maxPayload, clock: d.clock };
}

/**
 * One rule for timeouts, local or remote: a positive number of ms, at most
 * {@link MAX_TIMEOUT_MS} (longer ones, `Infinity` included, are cut to it); anything else is a
 * `RangeError`.
 */
export function resolveTimeout(timeout: number | undefined, fallback: number): number {
  const t = timeout ?? fallback;
  if (typeof t !== "number" || Number.isNaN(t) || t <= 0) {
    throw new RangeError(`A timeout must be a positive number of milliseconds, got ${String(t)}`);
  }
  return Math.min(t, MAX_TIMEOUT_MS);
}

/**
 * The data of a call made on this node (a class, not an object literal: see
 * docs/architecture.md, "Classes, not literals").
 */
class LocalCall {
  // Set only when present (`declare`: no field of its own otherwise, as with a literal).
  declare token?: string;
  declare idempotencyKey?: string;
  declare sink?: StreamSink;
  declare input?: StreamChannel;
  declare from?: string;
  declare key?: string;
  constructor(
    readonly kind: CallInit["kind"],
    readonly type: string,
    readonly id: string,
    readonly handler: string,
    readonly payload: unknown,
    readonly deadline: number,
    readonly chain: readonly string[],
  ) {}
}
