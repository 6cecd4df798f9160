/**
 * `gateway(system, options)`: a Hono app that exposes listed actor handlers over HTTP
 * (JSON or MessagePack bodies, replies as JSON), Server-Sent Events for streaming handlers,
 * WebSocket for duplex handlers, and health routes.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context as HonoContext } from "hono";
import { cors } from "hono/cors";
import { routePath } from "hono/route";
import {
  type AccessRule,
  type ActorDefinition,
  ActorError,
  type ActorRef,
  type AskOptions,
  type AuthOptions,
  type Caller,
  defineActor,
  type StreamOptions,
  type System,
  UnavailableError,
} from "../../mod.ts";
import { allows, createVerifier, fromJsonText, isValidSubject, type Verifier } from "../../spi.ts";
import { mediaType, readPayload, replyResponse } from "./_body.ts";
import { errorBody, GatewayError, statusOf } from "./_errors.ts";
import { feedResponse, feedRules, type GatewayFeeds } from "./_feed.ts";
import { addressKey, Buckets, Counters, Deadlines, type RateLimit } from "./_limits.ts";
import { sseResponse } from "./_sse.ts";
import { type GatewayTopics, topicResponse, topicRules } from "./_topics.ts";
import { duplexSocket } from "./_websocket.ts";
import { openApiDocument, type OpenApiOptions } from "./openapi.ts";

export type { RateLimit } from "./_limits.ts";
export type { GatewayTopics } from "./_topics.ts";
export type { FeedMessage, GatewayFeed, GatewayFeeds } from "./_feed.ts";

/**
 * What the gateway exposes. Nothing else is reachable: any other type or handler is `404`.
 *
 * - a list of definitions: every handler of each;
 * - a record by actor type name: a list of handler names, or a definition (every handler).
 *   Names given without a definition are called by name; pass the definitions in
 *   {@link GatewayOptions.actors} so the gateway knows which types are stateless workers
 *   and which handlers stream.
 *
 * @example
 * ```ts
 * import type { Expose } from "@troupe/troupe/hono";
 * const expose: Expose = { account: ["deposit", "balance", "statement"] };
 * ```
 */
export type Expose =
  // deno-lint-ignore no-explicit-any
  | readonly ActorDefinition<any>[]
  // deno-lint-ignore no-explicit-any
  | { readonly [type: string]: readonly string[] | ActorDefinition<any> };

/** Options of {@link gateway}'s `auth`. */
export interface GatewayAuthOptions {
  /**
   * Refuse calls without a token with `401 unauthorized` at the gateway, before they reach a
   * node. Tokens are verified by the node that runs the handler either way.
   * @default {false}
   */
  required?: boolean;
  /**
   * Where the caller's token comes from.
   * @default {the `Authorization: Bearer <jwt>` header}
   */
  token?: (req: Request) => string | undefined;
  /**
   * Verify tokens at the gateway too, with the same options as the nodes' `auth`: a bad token
   * is refused with `401` before its call reaches a node, and `limits.perCaller` and
   * `limits.maxStreamsPerCaller` count verified callers by `sub` (without it, every request
   * counts against its client address). The node that runs the handler verifies the token
   * again either way (cached).
   */
  verify?: AuthOptions;
}

/**
 * The gateway's limits on what one client, one caller and everyone together may hold: safe
 * for a gateway that faces the internet without a proxy in front. Over a rate: `429
 * rate_limited` with `Retry-After`; over a cap of work in progress: `429 overloaded`.
 *
 * @example
 * ```ts
 * import type { GatewayLimits } from "@troupe/troupe/hono";
 * const limits: GatewayLimits = {
 *   perCaller: { rate: 50, burst: 100 },
 *   perIp: { rate: 20, burst: 40 },
 *   maxStreamsPerCaller: 16,
 *   bodyTimeout: 10_000,
 * };
 * ```
 */
export interface GatewayLimits {
  /**
   * Requests per second of one verified caller (needs `auth.verify`); over it, `429
   * rate_limited`. @default {no limit}
   */
  perCaller?: RateLimit;
  /**
   * Requests per second from one client address (IPv6: one /64), for calls without a verified
   * caller (and for the first, not yet verified, request of a token). @default {no limit}
   */
  perIp?: RateLimit;
  /** Requests the gateway works on at once, open streams included. @default {10000} */
  maxConnections?: number;
  /** Server-Sent Event streams and WebSockets open at once. @default {1000} */
  maxStreams?: number;
  /**
   * Streams open at once per verified caller (or, without one, per client address); over it,
   * `429 rate_limited`. @default {16}
   */
  maxStreamsPerCaller?: number;
  /** Ms to receive a whole request body; then `408 timeout`. @default {10000} */
  bodyTimeout?: number;
  /** Largest request body, bytes; a bigger one is `413`. @default {1048576} */
  maxBody?: number;
  /** Largest WebSocket frame, bytes; a bigger one closes the socket with 1009. @default {65536} */
  maxFrame?: number;
  /**
   * Bytes queued per stream, each way: WebSocket input the handler has not taken (more closes
   * the socket with 1008), and WebSocket output the client has not read (the stream waits; a
   * client that reads nothing for `streamStall` ms is closed with 1008). Server-Sent Events
   * queue one item at a time (the next is made only when the client took the last).
   * @default {1048576}
   */
  maxBuffered?: number;
  /**
   * Ms a stream (SSE or WebSocket) may wait on a client that takes nothing before it is
   * closed and its actor stream cancelled. @default {30000}
   */
  streamStall?: number;
}

/**
 * CORS settings, given to Hono's `cors()` middleware.
 *
 * @example
 * ```ts
 * import type { GatewayCorsOptions } from "@troupe/troupe/hono";
 * const cors: GatewayCorsOptions = { origin: ["https://app.example"], maxAge: 600 };
 * ```
 */
export interface GatewayCorsOptions {
  /** Allowed origins: one, a list, or a function returning the origin to allow. @default {"*"} */
  origin?: string | string[] | ((origin: string) => string | undefined | null);
  /** Allowed request headers. @default {the preflight's Access-Control-Request-Headers} */
  allowHeaders?: string[];
  /** Response headers the page may read. @default {[]} */
  exposeHeaders?: string[];
  /** Seconds a preflight may be cached. */
  maxAge?: number;
  /** Whether cookies and credentials are allowed. @default {false} */
  credentials?: boolean;
}

/** CORS: `true` allows any origin; options restrict it. */
export type GatewayCors = boolean | GatewayCorsOptions;

/**
 * Options of {@link gateway}.
 *
 * @example
 * ```ts
 * import type { GatewayOptions } from "@troupe/troupe/hono";
 * const options: GatewayOptions = {
 *   expose: { account: ["deposit", "balance"] },
 *   cors: { origin: "https://app.example" },
 *   limits: { perIp: { rate: 20, burst: 40 }, maxBody: 64 * 1024 },
 * };
 * ```
 */
export interface GatewayOptions {
  /** What is reachable (see {@link Expose}). */
  expose: Expose;
  /** Definitions of the types named in `expose` (for stateless types and streaming handlers). */
  // deno-lint-ignore no-explicit-any
  actors?: readonly ActorDefinition<any>[];
  /** Token handling (see {@link GatewayAuthOptions}). @default {{ required: false }} */
  auth?: GatewayAuthOptions;
  /** Limits on rates, connections, streams, bodies and frames (see {@link GatewayLimits}). */
  limits?: GatewayLimits;
  /**
   * Origins allowed to open a WebSocket (the `Origin` header a browser sends with an upgrade);
   * another is refused with `403 forbidden`. A request without `Origin` (not from a browser)
   * is allowed. @default {the CORS origins when `cors` is set, else only the gateway's own
   * origin (the `Origin`'s host equals the request's `Host`)}
   */
  origins?: readonly string[];
  /**
   * The client address of a request, for `limits.perIp` and per-client stream counts.
   * `info` is what the server passed (`Deno.serve`: `{ remoteAddr }`). Behind a proxy, take
   * it from the proxy's header, and only from your own proxy.
   * @default {`info.remoteAddr.hostname`}
   */
  clientAddress?: (req: Request, info: unknown) => string | undefined;
  /**
   * Whether the duplex route (a WebSocket upgrade of a handler's path) is open. Deno reads each
   * WebSocket message whole, up to 64 MiB, before the gateway can refuse it: turn it off when
   * `maxStreams` × 64 MiB is more memory than the process may take. @default {true}
   */
  websocket?: boolean;
  /** Largest request body, bytes. @deprecated Use `limits.maxBody`. */
  maxBody?: number;
  /** Time an `ask` may take, ms; then `504 timeout`. @default {the system's askTimeout} */
  timeout?: number;
  /** Longest life of an SSE or WebSocket stream, ms. @default {3600000} */
  streamTimeout?: number;
  /** Milliseconds between SSE keep-alive comments; 0 turns them off. @default {15000} */
  keepAlive?: number;
  /** Seconds sent in `Retry-After` with `429` and `503`. @default {1} */
  retryAfter?: number;
  /** CORS (see {@link GatewayCors}). @default {false} */
  cors?: GatewayCors;
  /**
   * Drains the gateway when aborted (on SIGTERM, before `server.shutdown()`): `/readyz`
   * answers `503`, new calls get `503 unavailable`, and open SSE streams and WebSockets end
   * with `unavailable`, so the server's shutdown does not wait on them.
   */
  signal?: AbortSignal;
  /**
   * `GET /openapi.json`: the OpenAPI 3.1 document of what is exposed (title, version, a JSON
   * Schema converter: see {@link OpenApiOptions}); `false`: no such route. @default {{}}
   */
  openapi?: OpenApiOptions | false;
  /**
   * Pub/sub topics served as Server-Sent Events on `GET /_topics/{topic}` (a topic or a
   * pattern, such as `chat.lobby` or `chat.*`): each message published there (plain or
   * durable) is one `data:` line of JSON, live, from the moment the stream opened. Patterns map
   * to who may follow them (see {@link GatewayTopics}); rules other than `"public"` need
   * `auth.verify`. The caller's token also goes to `system.subscribe`, so the system's own
   * topic rules (`auth.topics` of `createSystem`) apply too. Streams count against the stream
   * limits; a client more than `limits.maxBuffered` bytes behind is cut off (an `EventSource`
   * reconnects). @default {{} (no topic is served)}
   */
  topics?: GatewayTopics;
  /**
   * Actor types whose event feed is served as Server-Sent Events on `GET /{type}/_feed`:
   * every event of every actor of the type, in the order of `system.feed()`, the stored ones
   * then live ones. Each event is one message with `id:` = its position and `data:` = a
   * {@link FeedMessage} (`{ position, actorType, id, seq, type, payload, at }`), under the
   * default event name (`EventSource.onmessage`). A reconnecting `EventSource` sends the
   * last id as `Last-Event-ID` and the feed resumes right after it; a first connection may
   * start after a position with `?after=` (`Last-Event-ID` wins when both are given). A
   * string that is not a position of the system's journal is `400 bad_payload`. Types map to
   * who may follow them (see {@link GatewayFeeds}); rules other than `"public"` need
   * `auth.verify`. Feeds count against the stream limits, and end like every SSE stream of the
   * gateway (`event: end` after `streamTimeout`, `event: error` when draining).
   *
   * @example
   * ```ts
   * import type { GatewayOptions } from "@troupe/troupe/hono";
   * const options: GatewayOptions = {
   *   expose: { account: ["deposit"] },
   *   feeds: { account: "role:auditor", chat: "public" },
   * };
   * ```
   * @default {{} (no feed is served)}
   */
  feeds?: GatewayFeeds;
}

/** The path segment of pub/sub topics: `/_topics/{topic}` (no actor type starts with `_`). */
const TOPICS = "_topics";
/** The path segment of an event feed, `/{type}/_feed`: never an id or a handler. */
const FEED = "_feed";

/** The methods no call route takes (`405`). */
const OTHER_METHODS = ["PUT", "PATCH", "DELETE", "OPTIONS"];

interface Entry {
  readonly name: string;
  readonly def: ActorDefinition | undefined;
  /** Handler names exposed; `undefined` means every handler of `def`. */
  readonly handlers: ReadonlySet<string> | undefined;
}

function entries(options: GatewayOptions): Map<string, Entry> {
  const byName = new Map<string, ActorDefinition>();
  for (const def of options.actors ?? []) byName.set(def.name, def);
  const out = new Map<string, Entry>();
  const add = (name: string, value: readonly string[] | ActorDefinition) => {
    if (Array.isArray(value)) {
      for (const h of value) {
        if (typeof h !== "string") {
          throw new TypeError(`gateway(): expose.${name} must list handler names`);
        }
      }
      out.set(name, { name, def: byName.get(name), handlers: new Set(value as string[]) });
    } else {
      const def = value as ActorDefinition;
      if (!def || typeof def.name !== "string" || !def.handlers) {
        throw new TypeError(`gateway(): expose.${name} must be a definition or handler names`);
      }
      if (def.name !== name) {
        throw new TypeError(`gateway(): expose.${name} is the definition of "${def.name}"`);
      }
      out.set(name, { name, def, handlers: undefined });
    }
  };
  if (Array.isArray(options.expose)) {
    for (const def of options.expose as readonly ActorDefinition[]) add(def?.name, def);
  } else {
    for (const [name, value] of Object.entries(options.expose)) add(name, value);
  }
  return out;
}

/** The token of a request: `Authorization: Bearer <token>`; other schemes are refused. */
export function bearer(req: Request, headers: HeaderSource = req.headers): string | undefined {
  const header = headers.get("authorization");
  if (header === null) return undefined;
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(header);
  if (!match) {
    throw new GatewayError("Authorization must be a Bearer token", "unauthorized");
  }
  return match[1];
}

/**
 * The options of a call made for a request: its timeout, idempotency key and the caller's
 * token. The token is the call's `token`: the node that runs the handler verifies it. The
 * request's `signal` is not used: `Deno.serve` aborts it as soon as a response is sent (so
 * it would end every stream at once); a closed SSE connection cancels its body instead.
 * `undefined` when there is none of them (the core's cheapest way, and no object to make).
 */
function callOptions(
  headers: HeaderSource,
  token: string | undefined,
  timeout: number | undefined,
): AskOptions | undefined {
  const key = headers.get("idempotency-key");
  if (timeout === undefined && token === undefined && (key === null || key === "")) {
    return undefined;
  }
  const options: AskOptions = {};
  if (timeout !== undefined) options.timeout = timeout;
  if (key !== null && key !== "") options.idempotencyKey = key;
  if (token !== undefined) options.token = token;
  return options;
}

/** What the gateway reads a request's headers from: its `Headers`, or Deno's server. */
export interface HeaderSource {
  /** The value of header `name` (lower case), `null` when the request has none. */
  get(name: string): string | null;
}

/** Deno's own request behind a `Request` of `Deno.serve`: its `header(name)` asks the server. */
interface ServerRequest {
  header(name: string): string | null;
}

/**
 * The field of Deno's `Request` that holds its server request (a symbol of Deno's), found on the
 * first requests and checked against `Request.headers`; `null`: not there (another runtime, or
 * another Deno), `req.headers` it is.
 */
let serverKey: symbol | null | undefined;
let serverTries = 0;

/**
 * A request's headers, read one by one from Deno's server when the request came from
 * `Deno.serve`. `req.headers` would ask the server the same way (an op per header), but once a
 * handler has looked at it, Deno copies the whole list when the response is sent (for a
 * `Request` that outlives its response): a copy a call never uses, as big as the request's
 * headers. Any other request: `req.headers`.
 */
class ServerHeaders implements HeaderSource {
  readonly #server: ServerRequest;
  constructor(server: ServerRequest) {
    this.#server = server;
  }
  get(name: string): string | null {
    return this.#server.header(name);
  }
}

function headersOf(req: Request): HeaderSource {
  const key = serverKey === undefined ? (serverKey = findServerKey(req)) : serverKey;
  if (key) {
    const server = (req as unknown as Record<symbol, ServerRequest | undefined>)[key];
    if (typeof server?.header === "function") return new ServerHeaders(server);
  }
  return req.headers;
}

/**
 * The symbol-keyed field of `req` that answers `header(name)` as `req.headers.get(name)` does
 * (checked on headers the request has); `undefined` to look again on a later request (this one
 * did not tell), `null` after 16 that did not.
 */
function findServerKey(req: Request): symbol | null | undefined {
  if (++serverTries > 16) return null;
  const names = ["host", "content-type", "content-length", "user-agent", "accept"];
  for (const key of Object.getOwnPropertySymbols(req)) {
    const server = (req as unknown as Record<symbol, Partial<ServerRequest> | undefined>)[key];
    if (typeof server?.header !== "function") continue;
    try {
      let seen = 0;
      for (const name of names) {
        const value = server.header(name);
        if (value !== req.headers.get(name)) return null;
        if (value !== null) seen++;
      }
      return seen > 0 ? key : undefined;
    } catch {
      return null;
    }
  }
  return undefined;
}

/** Whether an `Accept` header asks for Server-Sent Events. */
function wantsSse(accept: string): boolean {
  return accept.includes("text/event-stream") &&
    accept.split(",").map(mediaType).includes("text/event-stream");
}

/** Whether a `Prefer` header asks for `respond-async`. */
function wantsAsync(prefer: string): boolean {
  return prefer.split(",").some((p) => p.trim().toLowerCase() === "respond-async");
}

/** A ref by name for a type the gateway has no definition of. */
function refByName(system: System, name: string, id: string): ActorRef {
  const stub = defineActor({ name, handlers: {}, stateless: id === "" });
  return system.ref(stub, id) as unknown as ActorRef;
}

/**
 * Makes a Hono app exposing actors over HTTP. Mount it where you like
 * (`app.route("/api", gateway(system, { expose }))`).
 *
 * Routes (relative to the mount point):
 * - `POST /{type}/{id}/{handler}` (stateless types: `POST /{type}/{handler}`), body = the
 *   payload as `application/json` or `application/msgpack` (empty = no payload): `200` with
 *   the reply as JSON (MessagePack with `Accept: application/msgpack`).
 *   `Prefer: respond-async` sends a tell and answers `202` once accepted;
 *   `Idempotency-Key` is the call's idempotency key; `Authorization: Bearer <jwt>` its token.
 * - The same path with `Accept: text/event-stream` (`POST`, or `GET` with the payload as JSON
 *   in `?payload=`, for `EventSource`): Server-Sent Events of a streaming handler.
 * - The same path with a WebSocket upgrade (`GET`): duplex; each text frame in is one input
 *   item (JSON), each item out one frame.
 * - `GET /_topics/{topic}` (a topic or pattern allowed by `topics`): the topic's messages as
 *   Server-Sent Events, one `data:` line of JSON each.
 * - `GET /{type}/_feed` (a type allowed by `feeds`): the type's event feed as Server-Sent
 *   Events, `id:` = each event's position; resumes after `Last-Event-ID` (or `?after=`).
 * - `GET /healthz`: `200` while the process serves. `GET /readyz`: `200` while this node is
 *   a live member of the cluster, else `503`.
 *
 * Errors are `{ "error": { "code", "message", "data"? } }` with `bad_payload` 400 (413 for
 * a body over `limits.maxBody`, 415 for a body without a supported `Content-Type`),
 * `unauthorized` 401 (with `WWW-Authenticate: Bearer`), `forbidden` 403 (also a WebSocket
 * from an `Origin` not in `origins`), `unknown_handler`/`unknown_actor_type` 404, `timeout`
 * 408 for a body not received within `limits.bodyTimeout`, `conflict` 409, `overloaded` and
 * `rate_limited` 429 (with `Retry-After`), `unavailable` and `closed` 503, `timeout` 504 for a
 * handler past its deadline, a handler's own code 422, Troupe's internal errors 500 (logged
 * as one line each).
 *
 * Limits (see {@link GatewayLimits}) bound what clients can hold: requests and streams in
 * progress, request rates per caller and per address, the time and size of a body, and the
 * bytes queued per stream each way.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { createSystem, defineActor } from "@troupe/troupe";
 * import { gateway } from "@troupe/troupe/hono";
 *
 * const Account = defineActor({
 *   name: "account",
 *   initialState: () => ({ balance: 0 }),
 *   events: { deposited: (s, e: { amount: number }) => ({ balance: s.balance + e.amount }) },
 *   handlers: {
 *     deposit(ctx, amount: number) {
 *       ctx.emit("deposited", { amount });
 *       return ctx.state.balance;
 *     },
 *     balance: (ctx) => ctx.state.balance,
 *   },
 * });
 * const system = await createSystem({ actors: [Account] });
 * const app = new Hono();
 * app.route("/api", gateway(system, { expose: { account: ["deposit", "balance"] } }));
 * const res = await app.request("/api/account/alice/deposit", {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: "5",
 * });
 * console.log(res.status, await res.json()); // 200 5
 * await system.close();
 * ```
 */
export function gateway(system: System, options: GatewayOptions): Hono {
  const exposed = entries(options);
  const limits = options.limits ?? {};
  const maxBody = positive(limits.maxBody ?? options.maxBody ?? 1024 * 1024, "limits.maxBody");
  const bodyTimeout = positive(limits.bodyTimeout ?? 10_000, "limits.bodyTimeout");
  const bodyDeadlines = new Deadlines(
    bodyTimeout,
    () =>
      new GatewayError(`The request body did not arrive within ${bodyTimeout} ms`, "timeout", 408),
  );
  const maxFrame = positive(limits.maxFrame ?? 64 * 1024, "limits.maxFrame");
  const maxBuffered = positive(limits.maxBuffered ?? 1024 * 1024, "limits.maxBuffered");
  const streamStall = positive(limits.streamStall ?? 30_000, "limits.streamStall");
  const maxConnections = positive(limits.maxConnections ?? 10_000, "limits.maxConnections");
  const maxStreams = positive(limits.maxStreams ?? 1_000, "limits.maxStreams");
  const streamsPer = new Counters(
    positive(limits.maxStreamsPerCaller ?? 16, "limits.maxStreamsPerCaller"),
  );
  const perIp = limits.perIp ? new Buckets(limits.perIp, "limits.perIp") : undefined;
  const perCaller = limits.perCaller
    ? new Buckets(limits.perCaller, "limits.perCaller")
    : undefined;
  const verifier: Verifier | undefined = options.auth?.verify
    ? createVerifier(options.auth.verify, system.clock)
    : undefined;
  const topics = topicRules(options.topics);
  if (topics.needsCaller && !verifier) {
    throw new TypeError(
      'gateway(): topics rules other than "public" need auth.verify (the gateway decides who may follow a topic)',
    );
  }
  const feeds = feedRules(options.feeds, (type) => {
    const def = exposed.get(type)?.def ?? options.actors?.find((d) => d.name === type);
    return def as ActorDefinition | undefined;
  });
  if (feeds.needsCaller && !verifier) {
    throw new TypeError(
      'gateway(): feeds rules other than "public" need auth.verify (the gateway decides who may follow a feed)',
    );
  }
  if (perCaller && !verifier) {
    throw new TypeError(
      "gateway(): limits.perCaller needs auth.verify (callers are known only once verified)",
    );
  }
  const streamTimeout = options.streamTimeout ?? 3_600_000;
  const keepAlive = options.keepAlive ?? 15_000;
  const retryAfter = String(options.retryAfter ?? 1);
  const custom = options.auth?.token;
  const tokenOf = custom ? (req: Request, _headers: HeaderSource) => custom(req) : bearer;
  const clientAddress = options.clientAddress ?? remoteAddress;
  /** The rate-limit key of a request's client address (see `addressKey`). */
  const addressOf = (req: Request, info: unknown): string => {
    const address = clientAddress(req, info);
    return address === undefined ? "unknown" : addressKey(address);
  };
  const originAllowed = originCheck(options);
  // what ends streams when the gateway drains: an unavailable error, whatever the reason
  const draining = new AbortController();
  let drained = false; // `draining.signal.aborted`, without its getter on every request
  const drain = () => {
    drained = true;
    draining.abort(new UnavailableError("The gateway is shutting down"));
  };
  if (options.signal?.aborted) drain();
  options.signal?.addEventListener("abort", drain, { once: true });
  // work in progress: requests (streams included) and streams
  let inProgress = 0;
  let streamsOpen = 0;
  const app = new Hono();

  if (options.cors) {
    const o = options.cors === true ? {} : options.cors;
    app.use(
      "*",
      cors({
        origin: o.origin ?? "*",
        allowMethods: ["GET", "POST", "OPTIONS"],
        ...(o.allowHeaders ? { allowHeaders: o.allowHeaders } : {}),
        ...(o.exposeHeaders ? { exposeHeaders: o.exposeHeaders } : {}),
        ...(o.maxAge !== undefined ? { maxAge: o.maxAge } : {}),
        ...(o.credentials !== undefined ? { credentials: o.credentials } : {}),
      }),
    );
  }

  app.get("/healthz", function healthz(c) {
    return c.json({ ok: true, node: system.node });
  });

  app.get("/readyz", function readyz(c) {
    const status = system.status();
    const nodes = status === "closed" ? [] : system.directory.nodes();
    const member = status === "running" && !draining.signal.aborted &&
      nodes.some((n) => n.id === system.node);
    const hosted = new Set(nodes.flatMap((n) => n.types));
    const unhosted = [...exposed.keys()].filter((t) => !hosted.has(t));
    return c.json(
      { ready: member, status, node: system.node, nodes: nodes.length, unhosted },
      member ? 200 : 503,
    );
  });

  /** Charges one request to `key`'s bucket; over the rate, `429 rate_limited`. */
  const charge = (buckets: Buckets | undefined, key: string, who: string) => {
    if (buckets === undefined) return;
    const wait = buckets.take(key, system.clock.now());
    if (wait > 0) {
      throw new GatewayError(`Too many requests from ${who}`, "rate_limited", 429, wait);
    }
  };

  /**
   * Who a request is, for the limits: a verified caller (`"\0" + sub`), else its client
   * address. Charges the request to the bucket of whichever it is (and a token not verified
   * yet to the address too: verifying costs more than refusing). Synchronous unless a token
   * must be verified.
   */
  const admit = (
    c: HonoContext,
    token: string | undefined,
  ): string | undefined | Promise<string> => {
    if (token === undefined || verifier === undefined) {
      if (perIp === undefined) return undefined; // the address is worked out if a stream needs it
      const ip = addressOf(c.req.raw, c.env);
      charge(perIp, ip, "this address");
      return ip;
    }
    const caller: Caller | undefined = verifier.cached(token);
    if (caller !== undefined) {
      charge(perCaller, caller.sub, "this caller");
      return "\0" + caller.sub;
    }
    charge(perIp, addressOf(c.req.raw, c.env), "this address");
    return verifier.verify(token).then((caller) => {
      charge(perCaller, caller.sub, "this caller");
      return "\0" + caller.sub;
    }, (err) => {
      throw new GatewayError((err as Error).message, "unauthorized");
    });
  };

  /**
   * Holds one stream slot (total and per caller) until the returned release is called; `429`
   * when either is full.
   */
  const openStream = (who: string): () => void => {
    if (streamsOpen >= maxStreams) {
      throw new GatewayError(`The gateway has ${maxStreams} streams open`, "overloaded");
    }
    if (!streamsPer.acquire(who)) {
      throw new GatewayError(
        `Too many streams open for this ${who.startsWith("\0") ? "caller" : "address"}`,
        "rate_limited",
      );
    }
    streamsOpen++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      streamsOpen--;
      streamsPer.release(who);
    };
  };

  /** One call, from its admission to its response (or its error's). */
  const call = async (
    c: HonoContext,
    method: string,
    type: string,
    id: string | undefined,
    handler: string,
  ): Promise<Response> => {
    // counted among the requests in progress by the caller; a stream keeps its place until it
    // ends (see `giveBack`), everything else gives it back here
    let held = false; // a stream took over the place
    try {
      const req = c.req.raw;
      if (drained) throw draining.signal.reason;
      const headers = headersOf(req);
      const token = tokenOf(req, headers);
      const admitted = admit(c, token);
      const who = admitted instanceof Promise ? await admitted : admitted;
      const entry = exposed.get(type);
      if (!entry) {
        throw new GatewayError(`Actor type "${type}" is not exposed`, "unknown_actor_type");
      }
      if (
        entry.handlers ? !entry.handlers.has(handler) : !Object.hasOwn(entry.def!.handlers, handler)
      ) {
        throw new GatewayError(`Handler "${type}.${handler}" is not exposed`, "unknown_handler");
      }
      const def = entry.def;
      if (id === undefined && def && !def.stateless) {
        throw new GatewayError(
          `Actor type "${type}" needs an id: /${type}/{id}/${handler}`,
          "not_found",
        );
      }
      if (token === undefined && options.auth?.required) {
        throw new GatewayError("This gateway needs a Bearer token", "unauthorized");
      }
      const ref: ActorRef = def
        ? system.ref(def, id ?? "") as unknown as ActorRef
        : refByName(system, type, id ?? "");
      const streaming = def?.streaming.has(handler);

      if (method === "GET" && (headers.get("upgrade") ?? "").toLowerCase() === "websocket") {
        if (options.websocket === false) {
          throw new GatewayError("WebSockets are turned off on this gateway", "not_found");
        }
        if (!originAllowed(req)) {
          throw new GatewayError(
            `Origin "${headers.get("origin")}" may not open a WebSocket here`,
            "forbidden",
          );
        }
        // read before the upgrade: the request's headers are gone after it
        const wsOptions = streamOptions(headers, token);
        const release = openStream(who ?? addressOf(req, c.env));
        held = true;
        const done = giveBack();
        return duplexSocket(
          req,
          (input) => ref.stream(handler as never, input as never, wsOptions),
          {
            maxBuffered,
            maxFrame,
            stallTimeout: streamStall,
            onDone: () => {
              release();
              done();
            },
          },
        );
      }
      const accept = headers.get("accept");
      const sse = accept !== null && wantsSse(accept);
      let payload: unknown;
      if (method === "GET") {
        if (!sse) {
          throw new GatewayError(
            "Call a handler with POST (GET is for Server-Sent Events and WebSocket)",
            "method_not_allowed",
          );
        }
        const query = c.req.query("payload");
        if (query !== undefined) {
          if (query.length > maxBody) {
            throw new GatewayError("The payload parameter is too large", "bad_payload", 413);
          }
          payload = fromJsonText(query);
        }
      } else {
        payload = readPayload(req, headers, maxBody, bodyDeadlines);
        if (payload instanceof Promise) payload = await payload;
      }
      if (sse) {
        if (def && !streaming) {
          throw new GatewayError(
            `Handler "${type}.${handler}" does not stream: POST without Accept: text/event-stream`,
            "bad_payload",
            406,
          );
        }
        const release = openStream(who ?? addressOf(req, c.env));
        held = true;
        const done = giveBack();
        return sseResponse(
          ref.stream(handler as never, payload as never, streamOptions(headers, token)),
          {
            keepAlive,
            stallTimeout: streamStall,
            onDone: () => {
              release();
              done();
            },
          },
        );
      }
      if (streaming) {
        throw new GatewayError(
          `Handler "${type}.${handler}" streams: send Accept: text/event-stream or open a WebSocket`,
          "bad_payload",
          406,
        );
      }
      const askOptions = callOptions(headers, token, options.timeout);
      const prefer = headers.get("prefer");
      if (prefer !== null && wantsAsync(prefer)) {
        await ref.tell(handler as never, payload as never, askOptions);
        return new Response(null, {
          status: 202,
          headers: { "preference-applied": "respond-async" },
        });
      }
      const reply = await ref.ask(handler as never, payload as never, askOptions);
      return replyResponse(reply, accept);
    } catch (err) {
      return failed(c.req.raw, err);
    } finally {
      if (!held) inProgress--;
    }
  };

  /** `GET /_topics/{topic}`: the topic's messages as Server-Sent Events (see `_topics.ts`). */
  const followTopic = async (c: HonoContext, topic: string): Promise<Response> => {
    let held = false; // a stream took over the place among the requests in progress
    try {
      const req = c.req.raw;
      if (drained) throw draining.signal.reason;
      const token = tokenOf(req, req.headers);
      const admitted = admit(c, token);
      const who = admitted instanceof Promise ? await admitted : admitted;
      if (topic.length > 1024 || !isValidSubject(topic, true)) {
        throw new GatewayError(`Topic "${topic.slice(0, 80)}" is not valid`, "bad_payload");
      }
      const rule = topics.ruleFor(topic);
      if (rule === undefined) {
        throw new GatewayError(`Topic "${topic}" is not served here`, "not_found");
      }
      await authorize(rule, token, topic, "this topic", `"${topic}"`);
      const release = openStream(who ?? addressOf(req, c.env));
      held = true;
      const done = giveBack();
      // messages that come before the response exists wait here (a few)
      let early: unknown[] | undefined = [];
      let deliver = (payload: unknown) => {
        if (early!.length < 1024) early!.push(payload);
      };
      const sub = system.subscribe(
        topic,
        (payload) => deliver(payload),
        token === undefined ? {} : { token },
      );
      try {
        await sub.ready; // the system's topic rules, and the mesh knows of it
      } catch (err) {
        sub.unsubscribe();
        release();
        done();
        throw err;
      }
      return topicResponse(sub, (d) => {
        for (const payload of early!) d(payload);
        early = undefined;
        deliver = d;
      }, {
        keepAlive,
        maxBuffered,
        stallTimeout: streamStall,
        lifetime: streamTimeout,
        signal: draining.signal,
        onDone: () => {
          release();
          done();
        },
      });
    } catch (err) {
      return failed(c.req.raw, err);
    } finally {
      if (!held) inProgress--;
    }
  };

  /**
   * Whether the caller of `token` may follow what `rule` (of `topics` or `feeds`) covers:
   * `401` without a token where one is needed or with a bad one, `403` for a caller the rule
   * does not allow (`subject` is the rule's predicate's second argument).
   */
  const authorize = async (
    rule: AccessRule,
    token: string | undefined,
    subject: string,
    what: string,
    name: string,
  ): Promise<void> => {
    if (token === undefined && (options.auth?.required || rule !== "public")) {
      throw new GatewayError(`Following ${what} needs a Bearer token`, "unauthorized");
    }
    if (rule === "public") return;
    const caller = await verifier!.verify(token!).catch((err) => {
      throw new GatewayError((err as Error).message, "unauthorized");
    });
    if (!allows(rule, caller, subject)) {
      throw new GatewayError(`Caller "${caller.sub}" may not follow ${name}`, "forbidden");
    }
  };

  /**
   * `GET /{type}/_feed`: the type's event feed as Server-Sent Events (see `_feed.ts`), after
   * the request's `Last-Event-ID`, else its `?after=`, else from the start.
   */
  const followFeed = async (c: HonoContext, type: string): Promise<Response> => {
    let held = false; // a stream took over the place among the requests in progress
    try {
      const req = c.req.raw;
      if (drained) throw draining.signal.reason;
      const token = tokenOf(req, req.headers);
      const admitted = admit(c, token);
      const who = admitted instanceof Promise ? await admitted : admitted;
      const entry = feeds.entryFor(type);
      if (entry === undefined) {
        throw new GatewayError(`No event feed of "${type}" is served here`, "not_found");
      }
      await authorize(entry.rule, token, type, "this feed", `the feed of "${type}"`);
      const after = req.headers.get("last-event-id") || c.req.query("after") || undefined;
      if (after !== undefined && after.length > 1024) {
        throw new GatewayError("The feed position is too long", "bad_payload");
      }
      const release = openStream(who ?? addressOf(req, c.env));
      const done = giveBack();
      const over = () => {
        release();
        done();
      };
      let res: Response;
      try {
        res = feedResponse(system, entry.def, after, {
          keepAlive,
          stallTimeout: streamStall,
          lifetime: streamTimeout,
          signal: draining.signal,
          onDone: over,
        });
      } catch (err) {
        over();
        held = true; // `done` gave the place back
        // system.feed() refuses a string that is not a position of its journal
        if (err instanceof TypeError) throw new GatewayError(err.message, "bad_payload");
        throw err;
      }
      held = true;
      return res;
    } catch (err) {
      return failed(c.req.raw, err);
    } finally {
      if (!held) inProgress--;
    }
  };

  /** The options of a stream: its life is `streamTimeout`, and draining ends it. */
  const streamOptions = (headers: HeaderSource, token: string | undefined): StreamOptions => {
    const o = (callOptions(headers, token, undefined) ?? {}) as StreamOptions;
    o.timeout = streamTimeout;
    o.signal = draining.signal;
    return o;
  };

  /** A stream keeps its place among the requests in progress until it ends. */
  const giveBack = (): () => void => {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      inProgress--;
    };
  };

  /** The error response of a request (errors are handled here, not by `app.onError`). */
  const failed = (req: Request, err: unknown): Response => {
    const body = errorBody(err);
    const status = err instanceof GatewayError ? err.status : statusOf(body.error.code);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (status === 429 || status === 503) {
      const wait = err instanceof GatewayError ? err.retryAfter : undefined;
      headers["retry-after"] = wait === undefined ? retryAfter : String(wait);
    }
    if (status === 401) {
      headers["www-authenticate"] = req.headers.has("authorization")
        ? 'Bearer error="invalid_token"'
        : "Bearer";
    }
    if (status === 405) headers["allow"] = "POST";
    // a body that was not read whole leaves the connection in an unknown state: close it
    if (status === 408 || status === 413) headers["connection"] = "close";
    // a failure of the gateway itself (the core logs and masks the handlers' own): one line
    if (!(err instanceof ActorError)) console.error(`gateway: internal error: ${oneLine(err)}`);
    return new Response(JSON.stringify(body), { status, headers });
  };

  /**
   * Every call goes through this one route, `/*` of the gateway: one handler per request lets
   * Hono skip its middleware chain, and the path is split here (`/{type}/{id}/{handler}`, or
   * `/{type}/{handler}` for a stateless type; anything else is `404 not_found`).
   */
  if (options.openapi !== false) {
    const auth = { tokenRequired: options.auth?.required === true };
    app.get("/openapi.json", function openapi(c) {
      const base = c.req.path.slice(0, -"/openapi.json".length);
      return c.json(openApiDocument(exposed.values(), { base, ...auth }, options.openapi || {}));
    });
  }

  /**
   * Starts a call as one request in progress (a stream keeps its place until it ends: see
   * `giveBack`); over `maxConnections`, `429 overloaded` at once.
   */
  const start = (
    c: HonoContext,
    method: "GET" | "POST",
    type: string,
    id: string | undefined,
    handler: string,
  ): Response | Promise<Response> => {
    if (inProgress >= maxConnections) {
      return failed(
        c.req.raw,
        new GatewayError(`The gateway is working on ${maxConnections} requests`, "overloaded"),
      );
    }
    inProgress++;
    return call(c, method, type, id, handler);
  };

  /** A call route: the method is known from the route (reading `req.method` costs an op). */
  const route = (method: "GET" | "POST") =>
    function gatewayRoute(c: HonoContext): Response | Promise<Response> {
      const parts = pathParts(c);
      if (parts === undefined) {
        return failed(
          c.req.raw,
          new GatewayError(`No route ${method} ${c.req.path}`, "not_found"),
        );
      }
      if (parts[0] === TOPICS) return topicRoute(c, method, parts);
      if (parts[1] === FEED) return feedRoute(c, method, parts);
      return parts.length === 3
        ? start(c, method, parts[0]!, idFromPath(parts[1]!), parts[2]!)
        : start(c, method, parts[0]!, undefined, parts[1]!);
    };
  /**
   * `/_topics/{topic}` and `/{type}/_feed`: GET only, counted among the requests in progress
   * like a call.
   */
  const followRoute = (
    c: HonoContext,
    method: "GET" | "POST",
    parts: string[],
    what: string,
    follow: (c: HonoContext) => Promise<Response>,
  ): Response | Promise<Response> => {
    if (parts.length !== 2) {
      return failed(c.req.raw, new GatewayError(`No route ${c.req.path}`, "not_found"));
    }
    if (method !== "GET") {
      const res = failed(
        c.req.raw,
        new GatewayError(`Follow ${what} with GET (Server-Sent Events)`, "method_not_allowed"),
      );
      res.headers.set("allow", "GET");
      return res;
    }
    if (inProgress >= maxConnections) {
      return failed(
        c.req.raw,
        new GatewayError(`The gateway is working on ${maxConnections} requests`, "overloaded"),
      );
    }
    inProgress++;
    return follow(c);
  };
  const topicRoute = (c: HonoContext, method: "GET" | "POST", parts: string[]) =>
    followRoute(c, method, parts, "a topic", (c) => followTopic(c, parts[1]!));
  const feedRoute = (c: HonoContext, method: "GET" | "POST", parts: string[]) =>
    feeds.entryFor(parts[0]!) === undefined
      // whatever the method: what is not served is not there
      ? failed(
        c.req.raw,
        new GatewayError(`No event feed of "${parts[0]}" is served here`, "not_found"),
      )
      : followRoute(c, method, parts, "a feed", (c) => followFeed(c, parts[0]!));
  // One route per method, each on `/*` of the gateway: a request matches one handler (Hono then
  // skips its middleware chain), and the path is split here (`/{type}/{id}/{handler}`, or
  // `/{type}/{handler}` for a stateless type), cheaper than Hono's parameters.
  app.post("/*", route("POST"));
  app.get("/*", route("GET"));
  app.on(OTHER_METHODS, "/*", function otherMethod(c) {
    return failed(
      c.req.raw,
      new GatewayError(`Method ${c.req.method} is not allowed`, "method_not_allowed"),
    );
  });

  return app;
}

/** The route a gateway's `/*` was last matched as, and its segments before the `*`. */
let mountRoute = "";
let mountSegments = 0;

/**
 * Where Hono keeps a request's match (its `[[handler, route], params][]`), found on the first
 * request: the one symbol-keyed getter of its request class, used only if it gives what
 * `routePath` gives. `null`: not there (another Hono), `routePath` it is.
 */
let matchKey: symbol | null | undefined;

/**
 * The route a request matched (`routePath(c)`), without the copy of the matched routes that
 * `routePath` makes on every call.
 */
function matchedRoute(c: HonoContext): string {
  if (matchKey === undefined) {
    const symbols = Object.getOwnPropertySymbols(Object.getPrototypeOf(c.req));
    matchKey = symbols.length === 1 ? symbols[0]! : null;
    if (matchKey !== null && routeFrom(c, matchKey) !== routePath(c)) matchKey = null;
  }
  return (matchKey !== null && routeFrom(c, matchKey)) || routePath(c);
}

function routeFrom(c: HonoContext, key: symbol): string | undefined {
  // deno-lint-ignore no-explicit-any
  const path = (c.req as any)[key]?.[0]?.[c.req.routeIndex]?.[0]?.[1]?.path;
  return typeof path === "string" ? path : undefined;
}

/**
 * The two or three path segments of a request below the gateway's mount point
 * (percent-decoded), or undefined for any other path (an empty segment included). The mount
 * point is as many segments as the matched route (`<mount>/*`) has before its `*`.
 */
function pathParts(c: HonoContext): string[] | undefined {
  const route = matchedRoute(c);
  if (route !== mountRoute) {
    mountSegments = route.split("/").length - 2; // "/api/*" → 1, "/*" → 0
    mountRoute = route;
  }
  const path = c.req.path;
  let at = 0;
  for (let i = 0; i < mountSegments && at !== -1; i++) at = path.indexOf("/", at + 1);
  if (at === -1) return undefined;
  const parts: string[] = [];
  while (at !== -1) {
    if (parts.length === 3) return undefined;
    const next = path.indexOf("/", at + 1);
    const part = next === -1 ? path.slice(at + 1) : path.slice(at + 1, next);
    if (part === "") return undefined;
    parts.push(part.includes("%") ? decodeSegment(part) : part);
    at = next;
  }
  return parts.length < 2 ? undefined : parts;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // not valid percent-encoding: taken as it is
  }
}

function positive(value: number, what: string): number {
  if (!(value > 0)) throw new RangeError(`gateway(): ${what} must be positive, got ${value}`);
  return value;
}

/** `Deno.serve`'s client address (`info.remoteAddr.hostname`), when there is one. */
function remoteAddress(_req: Request, info: unknown): string | undefined {
  const addr = (info as { remoteAddr?: { hostname?: unknown } } | undefined)?.remoteAddr;
  return typeof addr?.hostname === "string" ? addr.hostname : undefined;
}

/**
 * An id from its path segment: `~.` and `~..` stand for `.` and `..` (dot segments that URL
 * parsers remove), and one `~` comes off any `~…~.`/`~…~..` (the client's `idSegment`).
 */
function idFromPath(segment: string): string {
  return segment.charCodeAt(0) === 0x7e && /^~+\.{1,2}$/.test(segment) ? segment.slice(1) : segment;
}

/** Whether a WebSocket upgrade's `Origin` is allowed (see `GatewayOptions.origins`). */
function originCheck(options: GatewayOptions): (req: Request) => boolean {
  let allowed: ((origin: string) => boolean) | undefined;
  if (options.origins !== undefined) {
    const list = new Set(options.origins);
    allowed = (o) => list.has(o);
  } else if (options.cors) {
    const origin = options.cors === true ? "*" : options.cors.origin ?? "*";
    if (typeof origin === "function") allowed = (o) => !!origin(o);
    else if (origin === "*") allowed = () => true;
    else {
      const list = new Set(typeof origin === "string" ? [origin] : origin);
      allowed = (o) => list.has(o);
    }
  }
  return (req) => {
    const origin = req.headers.get("origin");
    if (origin === null) return true; // not a browser: browsers always send it with an upgrade
    if (allowed) return allowed(origin);
    // same origin only: the page's host is the host it asked
    try {
      return new URL(origin).host === req.headers.get("host");
    } catch {
      return false;
    }
  };
}

/** An error as one log line: its name, message and the place it was thrown. */
function oneLine(err: unknown): string {
  if (!(err instanceof Error)) return String(err).slice(0, 500);
  const at = err.stack?.split("\n").find((l) => l.trim().startsWith("at "))?.trim();
  return `${err.name}: ${err.message}`.replaceAll("\n", " ").slice(0, 500) + (at ? ` (${at})` : "");
}
