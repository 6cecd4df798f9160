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
  defineActor,
  type StreamOptions,
  type System,
  UnavailableError,
} from "../../mod.ts";
import { decodeBody, encodeReply, mediaType, readBody } from "./_body.ts";
import { errorBody, GatewayError, statusOf } from "./_errors.ts";
import { sseResponse } from "./_sse.ts";
import { duplexSocket } from "./_websocket.ts";
import { openApiDocument, type OpenApiOptions } from "./openapi.ts";

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
 *   maxBody: 64 * 1024,
 *   cors: { origin: "https://app.example" },
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
  /** Largest request body, bytes; a bigger one is `413`. @default {1048576} */
  maxBody?: number;
  /** Time an `ask` may take, ms; then `504 timeout`. @default {the system's askTimeout} */
  timeout?: number;
  /** Longest life of an SSE or WebSocket stream, ms. @default {3600000} */
  streamTimeout?: number;
  /** Milliseconds between SSE keep-alive comments; 0 turns them off. @default {15000} */
  keepAlive?: number;
  /** Input items of a WebSocket not yet taken by the handler, before the socket is closed. @default {256} */
  maxBuffered?: number;
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
 * a body over `maxBody`, 415 for another content type), `unauthorized` 401, `forbidden`
 * 403, `unknown_handler`/`unknown_actor_type` 404, `conflict` 409, `overloaded` 429 (with
 * `Retry-After`), `unavailable` and `closed` 503, `timeout` 504, a handler's own code 422,
 * Troupe's internal errors 500.
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
  const maxBody = options.maxBody ?? 1024 * 1024;
  const streamTimeout = options.streamTimeout ?? 3_600_000;
  const keepAlive = options.keepAlive ?? 15_000;
  const maxBuffered = options.maxBuffered ?? 256;
  const retryAfter = String(options.retryAfter ?? 1);
  const tokenOf = options.auth?.token ?? bearer;
  // what ends streams when the gateway drains: an unavailable error, whatever the reason
  const draining = new AbortController();
  if (options.signal?.aborted) draining.abort(new UnavailableError("The gateway is shutting down"));
  options.signal?.addEventListener(
    "abort",
    () => draining.abort(new UnavailableError("The gateway is shutting down")),
    { once: true },
  );
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

  const call = async (c: HonoContext, type: string, id: string | undefined, handler: string) => {
    const req = c.req.raw;
    if (draining.signal.aborted) throw draining.signal.reason;
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
    const token = tokenOf(req);
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
      // read before the upgrade: the request's headers are gone after it
      const wsOptions = streamOptions();
      return duplexSocket(
        req,
        (input) => ref.stream(handler as never, input as never, wsOptions),
        { maxBuffered, maxFrame: maxBody },
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
      payload = decodeBody(await readBody(req, maxBody), req.headers.get("content-type"));
    }
    if (sse) {
      if (def && !streaming) {
        throw new GatewayError(
          `Handler "${type}.${handler}" does not stream: POST without Accept: text/event-stream`,
          "bad_payload",
          406,
        );
      }
      return sseResponse(ref.stream(handler as never, payload as never, streamOptions()), {
        keepAlive,
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

  if (options.openapi !== false) {
    const auth = { tokenRequired: options.auth?.required === true };
    app.get("/openapi.json", function openapi(c) {
      const base = c.req.path.slice(0, -"/openapi.json".length);
      return c.json(openApiDocument(exposed.values(), { base, ...auth }, options.openapi || {}));
    });
  }

  app.on(["GET", "POST"], "/:type/:id/:handler", function callActor(c) {
    return call(c, c.req.param("type"), c.req.param("id"), c.req.param("handler"));
  });
  app.on(["GET", "POST"], "/:type/:handler", function callWorker(c) {
    return call(c, c.req.param("type"), undefined, c.req.param("handler"));
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
    if (status === 429 || status === 503) c.header("retry-after", retryAfter);
    // a failure of the gateway itself (the core logs and masks the handlers' own)
    if (!(err instanceof ActorError)) console.error("gateway: internal error", err);
    // deno-lint-ignore no-explicit-any
    return c.json(body, status as any);
  });

  return app;
}
