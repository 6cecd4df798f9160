/**
 * Pub/sub topics as Server-Sent Events (`GET /_topics/{topic}` of the gateway): which patterns
 * are served and who may follow them, and the event stream of one subscription.
 *
 * Topic messages are pushed, not pulled like an actor stream: the gateway cannot slow a
 * publisher down, so each stream queues at most `maxBuffered` bytes for its client; a client
 * that falls further behind, or takes nothing for `stallTimeout` ms while messages wait, is
 * cut off (an `EventSource` reconnects by itself).
 *
 * @module
 */

import type { AccessRule, Subscription } from "../../mod.ts";
import { isValidSubject, json, patternCovers } from "../../spi.ts";
import { errorBody } from "./_errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Topic patterns the gateway serves as Server-Sent Events, each with who may follow it:
 * `"public"` (anyone, no token), `"authenticated"`, `"role:<name>"`, a predicate
 * `(caller, topic) => boolean`, or a list (any entry allows). A request names a topic or a
 * pattern; the first entry whose pattern covers all of it decides.
 *
 * @example
 * ```ts
 * import type { GatewayTopics } from "@troupe/troupe/hono";
 * const topics: GatewayTopics = {
 *   "chat.*": "public",
 *   "orders.>": ["role:ops", (caller, topic) => topic === `orders.${caller.sub}`],
 * };
 * ```
 */
export type GatewayTopics = { readonly [pattern: string]: AccessRule };

/** The rules of a gateway's `topics` option, checked once. */
export interface TopicRules {
  /** The rule that decides `topic`, or undefined when no pattern covers it. */
  ruleFor(topic: string): AccessRule | undefined;
  /** Whether some rule needs a verified caller (anything but `"public"`). */
  readonly needsCaller: boolean;
}

/** Checks a gateway's `topics` option. */
export function topicRules(topics: GatewayTopics | undefined): TopicRules {
  const entries = Object.entries(topics ?? {});
  for (const [pattern, rule] of entries) {
    if (!isValidSubject(pattern, true)) {
      throw new TypeError(`gateway(): topics pattern "${pattern}" is not valid`);
    }
    if (rule === undefined || rule === null) {
      throw new TypeError(`gateway(): topics["${pattern}"] needs a rule (e.g. "public")`);
    }
  }
  return {
    ruleFor: (topic) => entries.find(([pattern]) => patternCovers(pattern, topic))?.[1],
    needsCaller: entries.some(([, rule]) => rule !== "public"),
  };
}

/** Options of {@link topicResponse}. */
export interface TopicStreamOptions {
  /** Ms between `: keep-alive` comments; 0 turns them off. */
  keepAlive: number;
  /** Bytes queued for a client that does not keep up; past it the stream is cut. */
  maxBuffered: number;
  /** Ms a queued message may wait for the client; then the stream is cut. */
  stallTimeout: number;
  /** Longest life of the stream, ms; then it ends (`event: end`). */
  lifetime: number;
  /** Aborted when the gateway drains: the stream ends with `event: error` (its reason). */
  signal: AbortSignal;
  /** Headers to add. */
  headers?: HeadersInit;
  /** Called once when the stream is over. */
  onDone(): void;
}

/**
 * The SSE response of a subscription already in place (`sub.ready` resolved): `deliver`
 * receives each message (the subscription's handler calls it). One `data:` line of JSON per
 * message.
 */
export function topicResponse(
  sub: Subscription,
  bind: (deliver: (payload: unknown) => void) => void,
  o: TopicStreamOptions,
): Response {
  const queue: Uint8Array[] = [];
  let queued = 0;
  let waiting: (() => void) | undefined;
  let finished = false;
  let last: Uint8Array | undefined; // the closing event, once decided
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  let stall: ReturnType<typeof setTimeout> | undefined;
  let lifetime: ReturnType<typeof setTimeout> | undefined;
  let cancel = (_why: string) => {};

  const finish = () => {
    if (finished) return;
    finished = true;
    sub.unsubscribe();
    clearInterval(keepAlive);
    clearTimeout(stall);
    clearTimeout(lifetime);
    o.signal.removeEventListener("abort", onDrain);
    queue.length = 0;
    waiting?.(); // a pull waiting for a message ends
    o.onDone();
  };
  /** Ends the stream after `chunk` (the client gets it when it reads on). */
  const end = (chunk: Uint8Array) => {
    if (finished || last) return;
    last = chunk;
    sub.unsubscribe();
    waiting?.();
  };
  const onDrain = () => {
    const { code, message } = errorBody(o.signal.reason).error;
    end(encoder.encode(`event: error\ndata: ${JSON.stringify({ code, message })}\n\n`));
  };
  const push = (chunk: Uint8Array) => {
    if (finished || last) return;
    queue.push(chunk);
    queued += chunk.byteLength;
    if (queued > o.maxBuffered) return cancel("the client fell behind");
    if (waiting) waiting();
    else if (stall === undefined) {
      // nobody reads: a client that takes nothing must not hold its queue for ever
      stall = setTimeout(() => cancel("the client took nothing"), o.stallTimeout);
    }
  };

  bind((payload) => {
    let text: string;
    try {
      text = decoder.decode(json.encode(payload));
    } catch {
      return; // not representable as JSON: skipped
    }
    push(encoder.encode(`data: ${text}\n\n`));
  });

  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      cancel = (why) => {
        if (finished) return;
        finish();
        controller.error(new Error(`Topic stream cut: ${why}`));
      };
      controller.enqueue(encoder.encode(": topic\n\n"));
      if (o.keepAlive > 0) {
        keepAlive = setInterval(() => {
          if (queue.length === 0) push(encoder.encode(": keep-alive\n\n"));
        }, o.keepAlive);
      }
      lifetime = setTimeout(() => end(encoder.encode("event: end\ndata: null\n\n")), o.lifetime);
      if (o.signal.aborted) onDrain();
      else o.signal.addEventListener("abort", onDrain, { once: true });
    },
    async pull(controller) {
      clearTimeout(stall);
      stall = undefined;
      while (queue.length === 0 && !last && !finished) {
        await new Promise<void>((r) => waiting = r);
        waiting = undefined;
      }
      if (finished) return;
      const chunk = queue.shift();
      if (chunk) {
        queued -= chunk.byteLength;
        controller.enqueue(chunk);
        if (queue.length > 0) {
          stall = setTimeout(() => cancel("the client took nothing"), o.stallTimeout);
        }
        return;
      }
      controller.enqueue(last!);
      finish();
      controller.close();
    },
    cancel() {
      finish();
    },
  }, { highWaterMark: 0 });
  const headers = new Headers(o.headers);
  headers.set("content-type", "text/event-stream; charset=utf-8");
  headers.set("cache-control", "no-cache");
  headers.set("x-accel-buffering", "no");
  return new Response(body, { status: 200, headers });
}
