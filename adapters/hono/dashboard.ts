/**
 * `dashboard(system, options)`: a Hono app with a live page of the cluster — its nodes, actor
 * types, activations, message rates, recent errors and leases, and an actor inspector — fed
 * by `system.cluster` (every node's own report, over the mesh) and updated over Server-Sent
 * Events. No build step and nothing loaded from elsewhere: it works without internet.
 *
 * @module
 */

import { Hono } from "hono";
import {
  type AccessRule,
  type ActorStream,
  defineActor,
  type System,
  UnavailableError,
} from "../../mod.ts";
import { json } from "../../spi.ts";
import { DASHBOARD_CSS, DASHBOARD_JS, dashboardHtml } from "./_dashboard_page.ts";
import { errorBody, GatewayError, statusOf } from "./_errors.ts";
import { sseResponse } from "./_sse.ts";
import { bearer } from "./gateway.ts";
import { systemClock, type TimerId } from "../../spi.ts";

/** Options of {@link dashboard}. */
export interface DashboardOptions {
  /**
   * Who may see the cluster's data: an access rule, decided by the system's `auth` (with its
   * system-wide rules) for the request's token. `"public"` opens it to anyone. On a system
   * without `auth` nobody can be verified, so anything but `"public"` keeps it closed.
   * @default {"role:admin"}
   */
  access?: AccessRule;
  /**
   * Where the caller's token comes from.
   * @default {the `Authorization: Bearer <jwt>` header, as the gateway reads it}
   */
  token?: (req: Request) => string | undefined;
  /** How often the page gets fresh figures, ms. @default {1000} */
  interval?: number;
  /** How long each node's report is waited for, ms. @default {2000} */
  timeout?: number;
  /** The page's title. @default {"Troupe"} */
  title?: string;
  /** Milliseconds between SSE `: keep-alive` comments. @default {15000} */
  keepAlive?: number;
}

/** The access decision of the page goes through `system.explain()` on this pseudo type. */
function accessType(access: AccessRule) {
  return defineActor({
    name: "troupe-dashboard",
    handlers: { view: () => undefined },
    access: { view: access },
  });
}

/** What `system.explain()` says on a node without auth. */
const NO_AUTH = "no auth on this node";

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/**
 * Makes the dashboard: a Hono app to mount where you like
 * (`app.route("/troupe", dashboard(system))`).
 *
 * Routes (relative to the mount point):
 * - `GET /` (and any path ending with `/`): the page. It holds no data, so it is served to
 *   anyone; the page then reads the routes below with the token it is given (a sign-in box
 *   asks for one when they answer 401 or 403) as `Authorization: Bearer`.
 * - `GET /api/stats`: `system.cluster.stats()` as JSON.
 * - `GET /api/events`: the same, as Server-Sent Events every `interval` ms.
 * - `GET /api/actors/{type}/{id}`: `system.cluster.inspect(type, id)` (`?events=` how many
 *   of its last events, default 20) as JSON.
 *
 * Access: by default only callers with the role `admin` (`access: "role:admin"`), verified by
 * the system's `auth`; a system without `auth` must open it explicitly with
 * `access: "public"`, else the data routes answer `403`. A missing or invalid token is `401`.
 * Errors are the gateway's: `{ "error": { "code", "message" } }`.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { createSystem } from "@troupe/troupe";
 * import { dashboard } from "@troupe/troupe/hono";
 *
 * const system = await createSystem({ node: "n1" });
 * const app = new Hono();
 * app.route("/troupe", dashboard(system, { access: "public" })); // a system without auth
 * const res = await app.request("/troupe/api/stats");
 * console.log((await res.json()).nodes[0].id); // "n1"
 * await system.close();
 * ```
 */
export function dashboard(system: System, options: DashboardOptions = {}): Hono {
  const access = options.access ?? "role:admin";
  const tokenOf = options.token ?? bearer;
  const interval = options.interval ?? 1000;
  const timeout = options.timeout ?? 2000;
  const title = escapeHtml(options.title ?? "Troupe");
  if (!(interval > 0) || !(timeout > 0)) {
    throw new RangeError("dashboard(): interval and timeout must be positive numbers of ms");
  }
  const viewer = accessType(access);
  const app = new Hono();

  app.onError((err, c) => {
    const body = errorBody(err);
    const status = err instanceof GatewayError ? err.status : statusOf(body.error.code);
    return c.json(body, status as 400);
  });

  /** Refuses (throws) unless the request's caller may see the data. */
  const allowed = async (req: Request): Promise<void> => {
    if (access === "public") return;
    const token = tokenOf(req);
    const decision = await system.explain(viewer, "view", token !== undefined ? { token } : {});
    if (decision.by === NO_AUTH) {
      throw new GatewayError(
        'The dashboard is closed: this system has no auth, so no caller can be verified. Open it with dashboard(system, { access: "public" }), or give the system auth',
        "forbidden",
      );
    }
    if (!decision.allowed) {
      throw new GatewayError(
        decision.code === "unauthorized"
          ? "The dashboard needs a Bearer token"
          : `The caller may not see the dashboard (${decision.by})`,
        decision.code ?? "forbidden",
      );
    }
  };
  const sendJson = (value: unknown) =>
    new Response(json.encode(value) as Uint8Array<ArrayBuffer>, {
      headers: { "content-type": "application/json", "cache-control": "no-store" },
    });

  app.get("/api/stats", async (c) => {
    await allowed(c.req.raw);
    return sendJson(await system.cluster.stats({ timeout }));
  });

  app.get("/api/events", async (c) => {
    await allowed(c.req.raw);
    return sseResponse(statsFeed(system, interval, timeout), {
      keepAlive: options.keepAlive ?? 15_000,
    });
  });

  app.get("/api/actors/:type/:id", async (c) => {
    await allowed(c.req.raw);
    const n = c.req.query("events");
    const events = n === undefined ? 20 : Number(n);
    if (!Number.isInteger(events) || events < 0 || events > 1000) {
      throw new GatewayError("events must be an integer from 0 to 1000", "bad_payload");
    }
    const report = await system.cluster.inspect(c.req.param("type"), c.req.param("id"), {
      events,
      timeout,
    });
    return sendJson(report);
  });

  app.get("/api/*", () => {
    throw new GatewayError("No such dashboard route", "not_found");
  });

  app.get("/dashboard.js", () =>
    new Response(DASHBOARD_JS, {
      headers: { ...SECURITY_HEADERS, "content-type": "text/javascript; charset=utf-8" },
    }));
  app.get("/dashboard.css", () =>
    new Response(DASHBOARD_CSS, {
      headers: { ...SECURITY_HEADERS, "content-type": "text/css; charset=utf-8" },
    }));

  const page = (path: string) => {
    const base = path.endsWith("/") ? path : `${path}/`;
    return new Response(dashboardHtml(escapeHtml(base), title), {
      headers: { ...SECURITY_HEADERS, "content-type": "text/html; charset=utf-8" },
    });
  };
  app.get("/", (c) => page(c.req.path));
  app.get("/*", (c) => {
    if (!c.req.path.endsWith("/")) throw new GatewayError("Not found", "not_found");
    return page(c.req.path);
  });
  return app;
}

/**
 * The cluster's figures now, then every `interval` ms, as a stream for {@link sseResponse}:
 * the next report is asked for only once the last one was sent, and a closed connection
 * stops it.
 */
function statsFeed(system: System, interval: number, timeout: number): ActorStream<unknown> {
  let first = true;
  // Real time, not the system's clock: the browser watching wants fresh figures.
  const clock = systemClock;
  let timer: TimerId | undefined;
  let wake: (() => void) | undefined;
  let cancelled = false;
  const iterator: AsyncIterator<unknown> = {
    async next() {
      if (!first) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = clock.setTimeout(resolve, interval);
        });
      }
      first = false;
      if (cancelled) return { done: true, value: undefined };
      if (system.status() === "closed") throw new UnavailableError("The system is closed");
      return { done: false, value: await system.cluster.stats({ timeout }) };
    },
  };
  return {
    [Symbol.asyncIterator]: () => iterator,
    cancel() {
      cancelled = true;
      clock.clearTimeout(timer);
      wake?.();
      return Promise.resolve();
    },
  };
}
