/**
 * The chat app: the page at `/`, and the gateway at `/api`: `POST /api/room/{room}/post`,
 * `POST /api/room/{room}/recent`, and `GET /api/_topics/chat.{room}`, the room's topic as
 * Server-Sent Events (the gateway's `topics` option).
 *
 * @module
 */
import { Hono } from "hono";
import type { System } from "../../mod.ts";
import { gateway } from "../../adapters/hono/mod.ts";
import { Room } from "./actors.ts";
import { page } from "./page.ts";

/**
 * The chat app on `system` (which hosts {@link Room} or reaches nodes that do). Aborting
 * `signal` ends the open feeds and drains the gateway, so a server shutdown is quick.
 */
export function chatApp(system: System, signal?: AbortSignal): Hono {
  const app = new Hono();
  app.get("/", (c) => c.html(page));
  app.route(
    "/api",
    gateway(system, {
      expose: { room: ["post", "recent"] },
      actors: [Room],
      topics: { "chat.*": "public" }, // every room's live feed, for anyone
      limits: { maxBody: 4096 },
      ...(signal ? { signal } : {}),
    }),
  );
  return app;
}
