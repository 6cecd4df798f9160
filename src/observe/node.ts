/**
 * What one node observes of its message path: the hooks the path calls (a call sent, a call
 * ended, a turn run), which trace and record metrics when OpenTelemetry is on and always keep
 * the node's own counts (messages, errors and busy time per actor type, recent errors) that
 * `system.cluster`, the dashboard and NATS service discovery report.
 *
 * When OpenTelemetry is off a send costs a branch, and a turn an increment and a few branches
 * (one turn in {@link TIMED_EVERY} also reads the clock twice); nothing allocates but the
 * continuation of a turn that waits, and an error's record.
 *
 * @module
 */

import type { Span } from "@opentelemetry/api";
import { AttributeCache, type GaugeSource, getInstruments, metricsOn } from "./metrics.ts";
import type { ProjectionGauge, TypeGauge } from "./metrics.ts";
import { endSpan, errorCode, type Kind, runIn, startProcess, startSend } from "./tracing.ts";
import { tracingOn } from "./tracing.ts";
import { type Clock, systemClock } from "../util/clock.ts";

/** A message as a turn sees it (the node's call object). */
export interface Observed {
  /** ask, tell or stream. */
  readonly kind: Kind;
  /** Handler name. */
  readonly handler: string;
  /** The sender's trace context, if it sent one. */
  readonly trace?: string;
  /** The error the message ended with, once it ended with one. */
  readonly failure?: unknown;
}

/** What the observer needs of a call being sent. */
export interface Outgoing {
  readonly kind: Kind;
  readonly type: string;
  readonly id: string;
  readonly handler: string;
}

/** A call on its way (only while OpenTelemetry is on). */
export interface Sent<I extends Outgoing = Outgoing> {
  /** The call's data with its trace context (`trace`) when tracing is on. */
  readonly init: I & { readonly trace?: string };
  /** The caller's span. */
  readonly span: Span | undefined;
  /** When it was sent (the clock's `monotonic()`). */
  readonly t0: number;
  /** Whether {@link NodeObserver.sent} ended it. */
  ended: boolean;
}

/** Counts of one actor type's turns on this node (since the node started). */
export class TypeStats {
  /** Actor type. */
  readonly type: string;
  /** Turns run (messages handled). */
  messages = 0;
  /** Turns that ended with an error. */
  errors = 0;
  /** Time of the timed turns (one in {@link TIMED_EVERY}, the first included), ms. */
  timedMs = 0;
  /** How many turns were timed. */
  timedTurns = 0;
  /** The last error, `code: message`. */
  lastError: string | undefined;

  /** @param type The actor type. */
  constructor(type: string) {
    this.type = type;
  }

  /** Total time of the turns, ms (estimated: the timed turns' mean × the turns). */
  get busyMs(): number {
    return this.timedTurns === 0 ? 0 : (this.timedMs / this.timedTurns) * this.messages;
  }
}

/** An error a node saw: a call it sent that failed, or a turn it ran that failed. */
export interface RecentError {
  /** When, ms since the epoch. */
  readonly at: number;
  /** `sent`: a call from this node failed; `handled`: a turn on this node failed. */
  readonly where: "sent" | "handled";
  /** The error's code. */
  readonly code: string;
  /** The error's message. */
  readonly message: string;
  /** Actor type. */
  readonly type: string;
  /** Actor id ("" for a worker). */
  readonly id: string;
  /** Handler. */
  readonly handler: string;
}

/** How many recent errors a node keeps. */
export const RECENT_ERRORS = 50;
/**
 * One turn in this many is timed for {@link TypeStats.busyMs} (a power of two): a clock read
 * costs about as much as a small synchronous turn.
 */
export const TIMED_EVERY = 32;
/** The window of {@link NodeObserver.rates}, ms. */
const RATE_WINDOW_MS = 5_000;

/** Options of {@link NodeObserver}. */
export interface NodeObserverOptions {
  /** Trace the message path. @default {whether a tracer provider is registered} */
  tracing?: boolean;
  /** Record metrics. @default {whether a meter provider is registered} */
  metrics?: boolean;
  /** The node's clock: durations, rates and the times of recent errors. @default {systemClock} */
  clock?: Clock;
}

/**
 * The observer of one node.
 *
 * @example
 * ```ts
 * import { NodeObserver } from "./node.ts";
 * const obs = new NodeObserver("n1", () => [{ type: "counter", activations: 2, queued: 0 }]);
 * obs.sent(undefined, { kind: "ask", type: "counter", id: "c1", handler: "inc" }, new Error("x"));
 * obs.errors()[0]!.code; // "internal"
 * ```
 */
export class NodeObserver implements GaugeSource {
  /** The node id. */
  readonly node: string;
  /** Whether the message path is traced. */
  readonly tracing: boolean;
  /** Whether metrics are recorded. */
  readonly metrics: boolean;
  /** The node's clock. */
  readonly clock: Clock;
  readonly #on: boolean;
  readonly #view: () => Iterable<TypeGauge>;
  readonly #types = new Map<string, TypeStats>();
  readonly #errors: RecentError[] = [];
  readonly #attrs: AttributeCache;
  /** Samples of the message counts, oldest first, for {@link rates}. */
  #samples: { at: number; counts: Map<string, number> }[] = [];
  readonly #since: number;

  /**
   * @param node This node's id.
   * @param view The node's activations and queued messages per type, now.
   */
  constructor(node: string, view: () => Iterable<TypeGauge>, options: NodeObserverOptions = {}) {
    this.node = node;
    this.#view = view;
    this.clock = options.clock ?? systemClock;
    this.#since = this.clock.monotonic();
    this.tracing = options.tracing ?? tracingOn();
    this.metrics = options.metrics ?? metricsOn();
    this.#on = this.tracing || this.metrics;
    this.#attrs = new AttributeCache(node);
  }

  /** Starts reporting the node's activations and mailboxes to the observed instruments. */
  start(): void {
    if (this.metrics) getInstruments().sources.add(this);
  }

  /** Activations and queued messages per type on this node, now. */
  gauges(): Iterable<TypeGauge> {
    return this.#view();
  }

  readonly #projections = new Set<ProjectionGauge>();

  /** Reports projection `p` (its lag metric and stats); returns its removal. */
  projection(p: ProjectionGauge): () => void {
    this.#projections.add(p);
    return () => this.#projections.delete(p);
  }

  /** The projections started on this node. */
  projections(): Iterable<ProjectionGauge> {
    return this.#projections.values();
  }

  /** The counts of type `type` (made on first use; activations and pools keep theirs). */
  type(type: string): TypeStats {
    let s = this.#types.get(type);
    if (!s) this.#types.set(type, s = new TypeStats(type));
    return s;
  }

  /** The counts of every type that ran a turn here. */
  types(): Iterable<TypeStats> {
    return this.#types.values();
  }

  // ---- the caller's side ----

  /**
   * A call is sent: starts its span (a child of the active one) and its clock. Undefined, at
   * no cost, when OpenTelemetry is off; else the call's data with its trace context.
   */
  send<I extends Outgoing>(init: I): Sent<I> | undefined {
    if (!this.#on) return undefined;
    if (!this.tracing) return { init, span: undefined, t0: this.clock.monotonic(), ended: false };
    const s = startSend(init.type, init.id, init.handler, this.node, init.kind);
    return {
      init: { ...init, trace: s.trace },
      span: s.span,
      t0: this.clock.monotonic(),
      ended: false,
    };
  }

  /**
   * A call's caller has its answer (a reply, an acceptance, or `err`): ends its span, records
   * `troupe.ask.duration` and `troupe.errors`, and keeps the error among the recent ones.
   */
  sent(s: Sent | undefined, call: Outgoing, err?: unknown): void {
    if (err !== undefined) this.#remember("sent", call.type, call.id, call.handler, err);
    if (s === undefined || s.ended) return;
    s.ended = true;
    if (s.span) endSpan(s.span, err);
    if (!this.metrics) return;
    const m = getInstruments();
    const outcome = err === undefined ? "ok" : errorCode(err);
    if (call.kind === "ask") {
      m.askDuration.record(
        (this.clock.monotonic() - s.t0) / 1000,
        this.#attrs.get(call.type, call.handler, outcome),
      );
    }
    if (err !== undefined) {
      m.errors.add(1, this.#attrs.get(call.type, call.handler, outcome, call.kind));
    }
  }

  // ---- the handling side ----

  /**
   * Runs one turn, `body.call(self, m)`: counted in `stats`; traced as the
   * `process <type>.<handler>` span (active while the handler runs) when tracing is on. The
   * turn's outcome is the message's `failure` once `body` is done. One turn in
   * {@link TIMED_EVERY} is timed (a clock read costs about as much as a small turn).
   */
  turn<S, M extends Observed>(
    stats: TypeStats,
    id: string,
    m: M,
    body: (this: S, m: M) => Promise<void> | undefined,
    self: S,
  ): Promise<void> | undefined {
    const t0 = (++stats.messages & (TIMED_EVERY - 1)) === 1 ? this.clock.monotonic() : 0;
    if (this.tracing) return this.#tracedTurn(stats, id, m, body, self, t0);
    const r = body.call(self, m);
    if (r !== undefined) {
      return r.then(() => this.#turnEnded(stats, id, m, t0, undefined, m.failure));
    }
    const failure = m.failure;
    // The common case (a synchronous turn that went well, not timed) touches nothing more.
    if (t0 !== 0 || failure !== undefined) this.#turnEnded(stats, id, m, t0, undefined, failure);
    return undefined;
  }

  #tracedTurn<S, M extends Observed>(
    stats: TypeStats,
    id: string,
    m: M,
    body: (this: S, m: M) => Promise<void> | undefined,
    self: S,
    t0: number,
  ): Promise<void> | undefined {
    const { span, context } = startProcess(stats.type, id, m.handler, this.node, m.kind, m.trace);
    let r: Promise<void> | undefined;
    try {
      r = runIn(context, body, self, m);
    } catch (err) {
      this.#turnEnded(stats, id, m, t0, span, err);
      throw err;
    }
    if (r === undefined) return this.#turnEnded(stats, id, m, t0, span, m.failure);
    return r.then(() => this.#turnEnded(stats, id, m, t0, span, m.failure), (err) => {
      this.#turnEnded(stats, id, m, t0, span, err);
      throw err;
    });
  }

  #turnEnded(
    stats: TypeStats,
    id: string,
    m: Observed,
    t0: number,
    span: Span | undefined,
    failure: unknown,
  ): undefined {
    if (t0 !== 0) {
      stats.timedMs += this.clock.monotonic() - t0;
      stats.timedTurns++;
    }
    if (failure !== undefined) {
      stats.errors++;
      stats.lastError = `${errorCode(failure)}: ${messageOf(failure)}`;
      this.#remember("handled", stats.type, id, m.handler, failure);
    }
    if (span) endSpan(span, failure);
    return undefined;
  }

  /** A journal append of `type` (`events` events) took `seconds`. */
  committed(type: string, events: number, seconds: number): void {
    if (!this.metrics) return;
    const m = getInstruments();
    const attrs = this.#attrs.type(type);
    m.commitDuration.record(seconds, attrs);
    if (events > 0) m.appends.add(events, attrs);
  }

  // ---- what the node reports ----

  /** The recent errors, newest first (at most {@link RECENT_ERRORS}). */
  errors(): RecentError[] {
    return [...this.#errors].reverse();
  }

  /**
   * Messages handled per second per type, over about the last five seconds (since the node
   * started, at first).
   */
  rates(): Map<string, number> {
    const now = this.clock.monotonic();
    const counts = new Map<string, number>();
    for (const s of this.#types.values()) counts.set(s.type, s.messages);
    const samples = this.#samples;
    while (samples.length > 1 && now - samples[1]!.at >= RATE_WINDOW_MS) samples.shift();
    const base = samples[0] && now - samples[0].at >= 500
      ? samples[0]
      : { at: this.#since, counts: new Map<string, number>() };
    const last = samples[samples.length - 1];
    if (!last || now - last.at >= 1000) samples.push({ at: now, counts });
    const seconds = Math.max(0.001, (now - base.at) / 1000);
    const rates = new Map<string, number>();
    for (const [type, n] of counts) rates.set(type, (n - (base.counts.get(type) ?? 0)) / seconds);
    return rates;
  }

  /** Stops reporting to the metrics' observers. */
  close(): void {
    if (this.metrics) getInstruments().sources.delete(this);
  }

  #remember(
    where: RecentError["where"],
    type: string,
    id: string,
    handler: string,
    err: unknown,
  ): void {
    this.#errors.push({
      at: this.clock.now(),
      where,
      code: errorCode(err),
      message: messageOf(err),
      type,
      id,
      handler,
    });
    if (this.#errors.length > RECENT_ERRORS) this.#errors.shift();
  }
}

function messageOf(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 500);
}

/** What {@link activity} reads of the node's actors (structurally: the local delivery step). */
export interface ActivityView {
  readonly activations: ReadonlyMap<
    string,
    { readonly def: { readonly name: string }; readonly status: string; readonly queued: number }
  >;
  readonly workers: ReadonlyMap<
    string,
    { readonly def: { readonly name: string }; readonly load: number; readonly queued: number }
  >;
}

/**
 * Activations (active ones) and queued messages per hosted type, counted now; a worker
 * type's activations are its messages running.
 */
export function activity(view: ActivityView | undefined, types: Iterable<string>): TypeGauge[] {
  const out = new Map<string, { type: string; activations: number; queued: number }>();
  for (const t of types) out.set(t, { type: t, activations: 0, queued: 0 });
  if (!view) return [...out.values()];
  for (const act of view.activations.values()) {
    const g = out.get(act.def.name);
    if (!g) continue;
    if (act.status === "active") g.activations++;
    g.queued += act.queued;
  }
  for (const pool of view.workers.values()) {
    const g = out.get(pool.def.name);
    if (!g) continue;
    g.activations += pool.load - pool.queued;
    g.queued += pool.queued;
  }
  return [...out.values()];
}
