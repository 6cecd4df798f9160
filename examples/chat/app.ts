/**
 * The chat app: the page at `/`, the gateway at `/api` (`POST /api/room/{room}/post`,
 * `POST /api/room/{room}/recent`), and `GET /rooms/{room}/live`, Server-Sent Events of the
 * room's topic.
 *
 * @module
 */
import { Hono } from "hono";
import type { System } from "../../mod.ts";
import { gateway } from "../../adapters/hono/mod.ts";
import { Room, ROOM_NAME, roomTopic } from "./actors.ts";
import { page } from "./page.ts";

const encoder = new TextEncoder();

/** Messages a slow page may fall behind by before its feed is closed (it reconnects). */
const MAX_BEHIND = 256;

/** The SSE feed of a room's topic: each published message, one `data:` line of JSON. */
function liveFeed(system: System, room: string, signal: AbortSignal | undefined): Response {
  let unsubscribe = () => {};
  let timer: ReturnType<typeof setInterval> | undefined;
  let onAbort = () => {};
  const stop = () => {
    unsubscribe();
    clearInterval(timer);
    signal?.removeEventListener("abort", onAbort);
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      onAbort = () => {
        stop();
        controller.close();
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      const sub = system.subscribe(roomTopic(room), (message) => {
        if ((controller.desiredSize ?? 0) < -MAX_BEHIND) return onAbort(); // it reconnects
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(message)}\n\n`));
      });
      unsubscribe = () => sub.unsubscribe();
      controller.enqueue(encoder.encode(": live\n\n"));
      timer = setInterval(() => controller.enqueue(encoder.encode(": keep-alive\n\n")), 15_000);
    },
    cancel: stop,
  });
  return new Response(body, {
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
  });
}

/**
 * The chat app on `system` (which hosts {@link Room} or reaches nodes that do). Aborting
 * `signal` ends the open feeds and drains the gateway, so a server shutdown is quick.
 */
export function chatApp(system: System, signal?: AbortSignal): Hono {
  const app = new Hono();
  app.get("/", (c) => c.html(page));
  app.get("/rooms/:room/live", (c) => {
    const room = c.req.param("room");
    if (!ROOM_NAME.test(room)) {
      return c.json({ error: { code: "bad_room", message: "Bad room name" } }, 400);
    }
    return liveFeed(system, room, signal);
  });
  app.route(
    "/api",
    gateway(system, {
      expose: { room: ["post", "recent"] },
      actors: [Room],
      maxBody: 4096,
      ...(signal ? { signal } : {}),
    }),
  );
  return app;
}
