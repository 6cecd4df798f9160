/**
 * The HTTP gateway: {@link gateway} makes a Hono app that exposes listed actor handlers
 * over HTTP (JSON or MessagePack bodies), Server-Sent Events for streaming handlers and
 * WebSocket for duplex ones, with `/healthz` and `/readyz`; {@link client} is a typed fetch
 * client for it, for browsers and other services.
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
 *   },
 * });
 * const system = await createSystem({ actors: [Account] });
 * const app = new Hono();
 * app.route("/api", gateway(system, { expose: [Account] }));
 * // Deno.serve({ hostname: "127.0.0.1", port: 8000 }, app.fetch);
 * await system.close();
 * ```
 *
 * @module
 */
export { gateway } from "./gateway.ts";
export type {
  Expose,
  FeedMessage,
  GatewayAuthOptions,
  GatewayCors,
  GatewayCorsOptions,
  GatewayFeed,
  GatewayFeeds,
  GatewayLimits,
  GatewayOptions,
  GatewayTopics,
  RateLimit,
} from "./gateway.ts";
export { client } from "./client.ts";
export type {
  ActorClient,
  ClientCallOptions,
  ClientOptions,
  ClientStream,
  GatewayClient,
} from "./client.ts";
export { jsonSchemaOf, openApiDocument } from "./openapi.ts";
export type { ExposedType, JsonSchema, OpenApiContext, OpenApiOptions } from "./openapi.ts";
export type { ErrorBody } from "./_errors.ts";
export { dashboard } from "./dashboard.ts";
export type { DashboardOptions } from "./dashboard.ts";
export { GatewayError } from "./_errors.ts";
