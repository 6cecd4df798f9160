/**
 * Event feeds as Server-Sent Events (`GET /{type}/_feed` of the gateway): which types are
 * served and who may follow them, and the event stream of one feed.
 *
 * A feed is pulled, like an actor stream: the next event is read from the journal only once
 * the client took the last one, so the stream holds one event at a time (see `_sse.ts`).
 * Each event is one message with `id:` = its position, so an `EventSource` that reconnects
 * sends the last one as `Last-Event-ID` and the feed resumes right behind it.
 *
 * @module
 */

import {
  type AccessRule,
  type ActorDefinition,
  type ActorStream,
  defineActor,
  type FeedEvent,
  type System,
} from "../../mod.ts";
import { json, systemClock } from "../../spi.ts";
import { sseResponse } from "./_sse.ts";

const decoder = new TextDecoder();

/**
 * One type's feed with the definition to read it with: its events' payloads are upcast to the
 * definition's current versions.
 */
export interface GatewayFeed {
  /** Who may follow the feed (see {@link GatewayFeeds}). */
  access: AccessRule;
  /** The type's definition. @default {the one in `expose` or `actors`, else none} */
  // deno-lint-ignore no-explicit-any
  actor?: ActorDefinition<any>;
}

/**
 * Actor types whose event feed the gateway serves as Server-Sent Events on
 * `GET /{type}/_feed`, each with who may follow it: `"public"` (anyone, no token),
 * `"authenticated"`, `"role:<name>"`, a predicate `(caller, type) => boolean`, or a list (any
 * entry allows); or `{ access, actor }` with the type's definition. The definition comes from
 * `actor`, else from the gateway's `expose` or `actors`; without one the payloads come as they
 * were stored (no upcasting).
 *
 * @example
 * ```ts
 * import type { GatewayFeeds } from "@troupe/troupe/hono";
 * const feeds: GatewayFeeds = {
 *   chat: "public",
 *   account: "authenticated",
 *   audit: ["role:admin", (caller) => caller.sub === "auditor"],
 * };
 * ```
 */
export type GatewayFeeds = { readonly [type: string]: AccessRule | GatewayFeed };

/** A served feed: its definition and its rule. */
export interface FeedEntry {
  /** The definition the feed is read with (one by name, with no versions, when none is known). */
  // deno-lint-ignore no-explicit-any
  readonly def: ActorDefinition<any>;
  /** Who may follow it. */
  readonly rule: AccessRule;
}

/** The rules of a gateway's `feeds` option, checked once. */
export interface FeedRules {
  /** The entry of `type`, or undefined when its feed is not served. */
  entryFor(type: string): FeedEntry | undefined;
  /** Whether some rule needs a verified caller (anything but `"public"`). */
  readonly needsCaller: boolean;
}

/**
 * Checks a gateway's `feeds` option; `known` gives the definitions the gateway has (from
 * `expose` and `actors`).
 */
export function feedRules(
  feeds: GatewayFeeds | undefined,
  // deno-lint-ignore no-explicit-any
  known: (type: string) => ActorDefinition<any> | undefined,
): FeedRules {
  const served = new Map<string, FeedEntry>();
  for (const [type, value] of Object.entries(feeds ?? {})) {
    if (type === "" || type.startsWith("_") || type.includes("/")) {
      throw new TypeError(`gateway(): feeds["${type}"] is not an actor type name`);
    }
    if (value === undefined || value === null) {
      throw new TypeError(`gateway(): feeds["${type}"] needs a rule (e.g. "public")`);
    }
    const full = typeof value === "object" && !Array.isArray(value)
      ? value as GatewayFeed
      : undefined;
    const rule = full ? full.access : value as AccessRule;
    if (rule === undefined || rule === null) {
      throw new TypeError(`gateway(): feeds["${type}"].access needs a rule (e.g. "public")`);
    }
    if (full?.actor !== undefined && full.actor.name !== type) {
      throw new TypeError(
        `gateway(): feeds["${type}"].actor is the definition of "${full.actor.name}"`,
      );
    }
    // without a definition: one by name with no versions (payloads as stored)
    const def = full?.actor ?? known(type) ?? defineActor({ name: type, handlers: {} });
    served.set(type, { def, rule });
  }
  return {
    entryFor: (type) => served.get(type),
    needsCaller: [...served.values()].some((e) => e.rule !== "public"),
  };
}

/** The data of one feed message. */
export interface FeedMessage {
  /** The event's position (also the message's `id:`). */
  position: string;
  /** The actor's type. */
  actorType: string;
  /** The actor's id. */
  id: string;
  /** The event's place in the actor's log. */
  seq: number;
  /** The event type. */
  type: string;
  /** The payload (the gateway's JSON: see the `json` codec for values JSON has no form for). */
  payload: unknown;
  /** When it was appended, ISO 8601. */
  at: string;
}

/** The SSE message of one event: `id:` its position, `data:` a {@link FeedMessage}. */
function feedMessage(item: unknown): string {
  const e = item as FeedEvent;
  const data: FeedMessage = {
    position: e.position,
    actorType: e.actorType,
    id: e.id,
    seq: e.seq,
    type: e.type,
    payload: e.payload,
    at: e.at.toISOString(),
  };
  return `id: ${e.position}\ndata: ${decoder.decode(json.encode(data))}\n\n`;
}

/** Options of {@link feedResponse}. */
export interface FeedStreamOptions {
  /** Ms between `: keep-alive` comments; 0 turns them off. */
  keepAlive: number;
  /** Ms an event may wait for the client to take it; then the stream is cut. */
  stallTimeout: number;
  /** Longest life of the stream, ms; then it ends (`event: end`). */
  lifetime: number;
  /** Aborted when the gateway drains: the stream ends with `event: error` (its reason). */
  signal: AbortSignal;
  /** Called once when the stream is over. */
  onDone(): void;
}

/**
 * The SSE response of `def`'s feed after position `after` (undefined: from the start). Throws
 * `TypeError` (before anything is held) when `after` is not a position of the system's
 * journal.
 */
export function feedResponse(
  system: System,
  // deno-lint-ignore no-explicit-any
  def: ActorDefinition<any>,
  after: string | undefined,
  o: FeedStreamOptions,
): Response {
  const stop = new AbortController();
  const feed = system.feed(def, {
    ...(after === undefined ? {} : { after }),
    signal: stop.signal,
  });
  const onDrain = () => stop.abort();
  // the gateway's socket bounds are real time (docs/architecture.md, "One clock")
  const lifetime = systemClock.setTimeout(() => stop.abort(), o.lifetime);
  if (o.signal.aborted) stop.abort();
  else o.signal.addEventListener("abort", onDrain, { once: true });
  const events = (async function* () {
    yield* feed;
    // the feed ends quietly when aborted: say why a draining gateway ended it
    if (o.signal.aborted) throw o.signal.reason;
  })();
  const stream: ActorStream<unknown> = {
    [Symbol.asyncIterator]: () => events,
    async cancel() {
      stop.abort();
      await events.return(undefined);
    },
  };
  return sseResponse(stream, {
    keepAlive: o.keepAlive,
    stallTimeout: o.stallTimeout,
    format: feedMessage,
    onDone() {
      systemClock.clearTimeout(lifetime);
      o.signal.removeEventListener("abort", onDrain);
      stop.abort();
      o.onDone();
    },
  });
}
