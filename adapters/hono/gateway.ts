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
import {
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
import { createVerifier, type Verifier } from "../../src/auth/verify.ts";
import { decodeBody, encodeReply, mediaType, readBody } from "./_body.ts";
import { errorBody, GatewayError, statusOf } from "./_errors.ts";
import { addressKey, Buckets, Counters, type RateLimit } from "./_limits.ts";
import { sseResponse } from "./_sse.ts";
import { duplexSocket } from "./_websocket.ts";

export type { RateLimit } from "./_limits.ts";

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
}

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
function bearer(req: Request): string | undefined {
  const header = req.headers.get("authorization");
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
 */
function callOptions(
  req: Request,
  token: string | undefined,
  timeout: number | undefined,
): AskOptions {
  const options: AskOptions = {};
  if (timeout !== undefined) options.timeout = timeout;
  const key = req.headers.get("idempotency-key");
  if (key !== null && key !== "") options.idempotencyKey = key;
  if (token !== undefined) options.token = token;
  return options;
}

function wantsSse(req: Request): boolean {
  return (req.headers.get("accept") ?? "").split(",").map(mediaType).includes("text/event-stream");
}

function wantsAsync(req: Request): boolean {
  return (req.headers.get("prefer") ?? "").split(",").some((p) =>
    p.trim().toLowerCase() === "respond-async"
  );
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
    ? createVerifier(options.auth.verify)
    : undefined;
  if (perCaller && !verifier) {
    throw new TypeError(
      "gateway(): limits.perCaller needs auth.verify (callers are known only once verified)",
    );
  }
  const streamTimeout = options.streamTimeout ?? 3_600_000;
  const keepAlive = options.keepAlive ?? 15_000;
  const retryAfter = String(options.retryAfter ?? 1);
  const tokenOf = options.auth?.token ?? bearer;
  const addressOf = options.clientAddress ?? remoteAddress;
  const originAllowed = originCheck(options);
  // what ends streams when the gateway drains: an unavailable error, whatever the reason
  const draining = new AbortController();
  if (options.signal?.aborted) draining.abort(new UnavailableError("The gateway is shutting down"));
  options.signal?.addEventListener(
    "abort",
    () => draining.abort(new UnavailableError("The gateway is shutting down")),
    { once: true },
  );
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
    const wait = buckets.take(key, performance.now());
    if (wait > 0) {
      throw new GatewayError(`Too many requests from ${who}`, "rate_limited", 429, wait);
    }
  };

  /**
   * Who a request is, for the limits: a verified caller (its `sub`), else its client address.
   * Charges the request to the bucket of whichever it is (and a token not verified yet to the
   * address too: verifying costs more than refusing).
   */
  const admit = async (c: HonoContext, token: string | undefined): Promise<string> => {
    const address = addressOf(c.req.raw, c.env);
    const ip = address === undefined ? "unknown" : addressKey(address);
    if (token === undefined || verifier === undefined) {
      charge(perIp, ip, "this address");
      return `ip ${ip}`;
    }
    let caller: Caller | undefined = verifier.cached(token);
    if (caller === undefined) {
      charge(perIp, ip, "this address");
      try {
        caller = await verifier.verify(token);
      } catch (err) {
        throw new GatewayError((err as Error).message, "unauthorized");
      }
    }
    charge(perCaller, caller.sub, "this caller");
    return `sub ${caller.sub}`;
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
        `Too many streams open for this ${who.startsWith("sub ") ? "caller" : "address"}`,
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

  const call = async (
    c: HonoContext,
    type: string,
    id: string | undefined,
    handler: string,
    hold: () => () => void,
  ) => {
    const req = c.req.raw;
    if (draining.signal.aborted) throw draining.signal.reason;
    const token = tokenOf(req);
    const who = await admit(c, token);
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
    const streamOptions = (): StreamOptions => ({
      ...callOptions(req, token, undefined),
      timeout: streamTimeout,
      signal: draining.signal,
    });

    if ((req.headers.get("upgrade") ?? "").toLowerCase() === "websocket") {
      if (req.method !== "GET") {
        throw new GatewayError("A WebSocket upgrade must be a GET", "method_not_allowed");
      }
      if (!originAllowed(req)) {
        throw new GatewayError(
          `Origin "${req.headers.get("origin")}" may not open a WebSocket here`,
          "forbidden",
        );
      }
      // read before the upgrade: the request's headers are gone after it
      const wsOptions = streamOptions();
      const release = openStream(who);
      const done = hold();
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
    const sse = wantsSse(req);
    let payload: unknown;
    if (req.method === "GET") {
      if (!sse) {
        c.header("allow", "POST");
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
        payload = decodeBody(new TextEncoder().encode(query), "application/json");
      }
    } else {
      payload = decodeBody(
        await readBody(req, maxBody, bodyTimeout),
        req.headers.get("content-type"),
      );
    }
    if (sse) {
      if (def && !streaming) {
        throw new GatewayError(
          `Handler "${type}.${handler}" does not stream: POST without Accept: text/event-stream`,
          "bad_payload",
          406,
        );
      }
      const release = openStream(who);
      const done = hold();
      return sseResponse(ref.stream(handler as never, payload as never, streamOptions()), {
        keepAlive,
        stallTimeout: streamStall,
        onDone: () => {
          release();
          done();
        },
      });
    }
    if (streaming) {
      throw new GatewayError(
        `Handler "${type}.${handler}" streams: send Accept: text/event-stream or open a WebSocket`,
        "bad_payload",
        406,
      );
    }
    const askOptions = callOptions(req, token, options.timeout);
    if (wantsAsync(req)) {
      await ref.tell(handler as never, payload as never, askOptions);
      c.header("preference-applied", "respond-async");
      return c.body(null, 202);
    }
    const reply = await ref.ask(handler as never, payload as never, askOptions);
    const { body, contentType } = encodeReply(reply, req.headers.get("accept"));
    return c.body(body as Uint8Array<ArrayBuffer>, 200, { "content-type": contentType });
  };

  /**
   * Runs a call as one request in progress: refused with `429 overloaded` when
   * `maxConnections` are; a stream keeps its place until it ends (`hold`).
   */
  const request = async (
    c: HonoContext,
    type: string,
    id: string | undefined,
    handler: string,
  ) => {
    if (inProgress >= maxConnections) {
      throw new GatewayError(
        `The gateway is working on ${maxConnections} requests`,
        "overloaded",
      );
    }
    inProgress++;
    let held = false;
    const hold = () => {
      held = true;
      let done = false;
      return () => {
        if (done) return;
        done = true;
        inProgress--;
      };
    };
    try {
      return await call(c, type, id, handler, hold);
    } finally {
      if (!held) inProgress--;
    }
  };

  app.on(["GET", "POST"], "/:type/:id/:handler", function callActor(c) {
    return request(c, c.req.param("type"), idFromPath(c.req.param("id")), c.req.param("handler"));
  });
  app.on(["GET", "POST"], "/:type/:handler", function callWorker(c) {
    return request(c, c.req.param("type"), undefined, c.req.param("handler"));
  });

  // a route, not `app.notFound()`: a mounted app's notFound handler is not used by its parent
  app.all("*", function notFound(c) {
    return c.json(
      errorBody(new GatewayError(`No route ${c.req.method} ${c.req.path}`, "not_found")),
      404,
    );
  });

  app.onError(function onError(err, c) {
    const body = errorBody(err);
    const status = err instanceof GatewayError ? err.status : statusOf(body.error.code);
    if (status === 429 || status === 503) {
      const wait = err instanceof GatewayError ? err.retryAfter : undefined;
      c.header("retry-after", wait === undefined ? retryAfter : String(wait));
    }
    if (status === 401) {
      c.header(
        "www-authenticate",
        c.req.raw.headers.has("authorization") ? 'Bearer error="invalid_token"' : "Bearer",
      );
    }
    // a body that was not read whole leaves the connection in an unknown state: close it
    if (status === 408 || status === 413) c.header("connection", "close");
    // a failure of the gateway itself (the core logs and masks the handlers' own): one line
    if (!(err instanceof ActorError)) console.error(`gateway: internal error: ${oneLine(err)}`);
    // deno-lint-ignore no-explicit-any
    return c.json(body, status as any);
  });

  return app;
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
