/**
 * Tracing of the message path on OpenTelemetry's API (`@opentelemetry/api`), which reaches
 * Deno's built-in OpenTelemetry when it is on (`OTEL_DENO=true`) and does nothing otherwise.
 *
 * The caller's `send <type>.<handler>` span (CLIENT for an ask or a stream, PRODUCER for a
 * tell) is a child of whatever span is active where the call is made: a `Deno.serve` request
 * (which continues an incoming `traceparent`), or the turn that makes a nested call. Its W3C
 * trace context travels with the message ({@link traceOf}: `traceparent`, then a space and
 * `tracestate` when there is one) to the node that runs the handler, whose
 * `process <type>.<handler>` span (SERVER / CONSUMER) is the send span's child and is active
 * while the handler runs, so the calls the handler makes are its children.
 *
 * Sampling is decided where a trace starts (Deno's sampler, `OTEL_TRACES_SAMPLER`) and followed
 * on every hop: a message whose trace context says "not sampled" records no span and passes
 * that on, as a parent-based sampler would decide, without paying for spans nobody exports.
 *
 * @module
 */

import {
  type Context,
  context,
  createContextKey,
  type Link,
  propagation,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
} from "@opentelemetry/api";
import { ActorError } from "../errors.ts";

/** Span and metric attribute names. */
export const ATTR = {
  type: "troupe.actor.type",
  id: "troupe.actor.id",
  handler: "troupe.handler",
  node: "troupe.node",
  kind: "troupe.message.kind",
  error: "error.type",
  outcome: "outcome",
  projection: "troupe.projection",
} as const;

/**
 * Whether a tracer provider is registered with the OpenTelemetry API in this process
 * (Deno's own with `OTEL_DENO=true`, or an SDK's): without one, nothing is traced and the
 * message path skips every tracing step.
 */
export function tracingOn(): boolean {
  return !(trace.getTracerProvider() instanceof ProxyTracerProvider);
}

const tracer = () => trace.getTracer("troupe");

/**
 * The stable code of an error for `error.type`: an {@link ActorError}'s code, `aborted` for a
 * caller's abort (`AbortSignal` without a reason of its own), else `internal`.
 */
export function errorCode(err: unknown): string {
  if (err instanceof ActorError) return err.code;
  return err instanceof Error && err.name === "AbortError" ? "aborted" : "internal";
}

/** The message kinds, as far as tracing cares. */
export type Kind = "ask" | "tell" | "stream";

/** Attributes of a message's spans. */
function attributes(type: string, id: string, handler: string, node: string, kind: Kind) {
  const attrs: Record<string, string> = {
    [ATTR.type]: type,
    [ATTR.handler]: handler,
    [ATTR.node]: node,
    [ATTR.kind]: kind,
  };
  if (id !== "") attrs[ATTR.id] = id;
  return attrs;
}

/** The key under which {@link withLink} puts the span context a call links to. */
const LINK = createContextKey("troupe.link");

/**
 * Starts the caller's `send <type>.<handler>` span, a child of the active span; it links to
 * the span named by {@link withLink} around the call, if any.
 */
export function startSend(
  type: string,
  id: string,
  handler: string,
  node: string,
  kind: Kind,
): { span: Span | undefined; trace: string } {
  const active = context.active();
  const parent = trace.getSpan(active);
  if (parent !== undefined && (parent.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) {
    // Its trace is not sampled: record nothing, pass the decision on.
    return { span: undefined, trace: traceOf(active) };
  }
  const linked = active.getValue(LINK) as Link | undefined;
  const span = tracer().startSpan(`send ${type}.${handler}`, {
    kind: kind === "tell" ? SpanKind.PRODUCER : SpanKind.CLIENT,
    attributes: attributes(type, id, handler, node, kind),
    ...(linked ? { links: [linked] } : {}),
  }, active);
  return { span, trace: traceOf(trace.setSpan(active, span)) };
}

/**
 * Starts the handling node's `process <type>.<handler>` span, a child of the sender's span
 * named by `from` (a {@link traceOf} string) or a root span without one; returns it with the
 * context to run the handler in.
 */
export function startProcess(
  type: string,
  id: string,
  handler: string,
  node: string,
  kind: Kind,
  from: string | undefined,
): { span: Span | undefined; context: Context } {
  const parent = from === undefined ? ROOT_CONTEXT : contextOf(from);
  // The sender's trace is not sampled: record nothing; its calls inherit the decision.
  if (from !== undefined && !sampled(from)) return { span: undefined, context: parent };
  const span = tracer().startSpan(`process ${type}.${handler}`, {
    kind: kind === "tell" ? SpanKind.CONSUMER : SpanKind.SERVER,
    attributes: attributes(type, id, handler, node, kind),
  }, parent);
  return { span, context: trace.setSpan(parent, span) };
}

/** Ends a span; with an error: status ERROR and `error.type` = its code. */
export function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined) {
    span.setAttribute(ATTR.error, errorCode(err));
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: err instanceof Error ? err.message : String(err),
    });
  }
  span.end();
}

/** Whether a {@link traceOf} string says its trace is sampled (the last bit of its flags). */
function sampled(traced: string): boolean {
  // "00-<trace id: 32>-<span id: 16>-<flags: 2>"
  const flags = parseInt(traced.slice(53, 55), 16);
  return Number.isNaN(flags) || (flags & TraceFlags.SAMPLED) !== 0;
}

/** The W3C trace context of `ctx` as one string: `traceparent`, a space, then `tracestate`. */
export function traceOf(ctx: Context = context.active()): string {
  const carrier: { traceparent?: string; tracestate?: string } = {};
  propagation.inject(ctx, carrier);
  if (carrier.traceparent === undefined) return "";
  return carrier.tracestate ? `${carrier.traceparent} ${carrier.tracestate}` : carrier.traceparent;
}

/** The context a {@link traceOf} string names (the root context when it names none). */
export function contextOf(traced: string): Context {
  const space = traced.indexOf(" ");
  const carrier = space < 0
    ? { traceparent: traced }
    : { traceparent: traced.slice(0, space), tracestate: traced.slice(space + 1) };
  return propagation.extract(ROOT_CONTEXT, carrier);
}

/**
 * The trace context of the active span (e.g. the turn that schedules a reminder), or
 * undefined when none is active or tracing is off.
 */
export function activeTrace(): string | undefined {
  if (trace.getActiveSpan() === undefined) return undefined;
  return traceOf() || undefined;
}

/**
 * Runs `fn` so that the calls it makes link to the span named by `traced` (a reminder fired
 * links to the turn that scheduled it): they start traces of their own, with a link.
 */
export function withLink<T>(traced: string | undefined, fn: () => T): T {
  if (traced === undefined || traced === "") return fn();
  const spanContext = trace.getSpanContext(contextOf(traced));
  if (!spanContext) return fn();
  const link: Link = { context: spanContext };
  return context.with(ROOT_CONTEXT.setValue(LINK, link), fn);
}

/** Runs `fn` with `ctx` active (so that its calls and their continuations see it). */
export function runIn<A extends unknown[], R>(
  ctx: Context,
  fn: (...args: A) => R,
  self: unknown,
  ...args: A
): R {
  return context.with(ctx, fn, self, ...args);
}

/** `{ trace }` of the active span, to spread into a record (`{}` when none or tracing is off). */
export function traceField(): { trace?: string } {
  const t = activeTrace();
  return t === undefined ? {} : { trace: t };
}
