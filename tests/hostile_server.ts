/**
 * The server the hostile-traffic tests attack (a child process, so its memory is its own): a
 * node with the target actors and a gateway on a free loopback port. The gateway's options
 * come as JSON in `TROUPE_GATEWAY` (`limits`, `origins`, `cors`, `auth`); with `TROUPE_AUTH`
 * (a JSON `AuthOptions` with an HS256 `secret`) the node and the gateway verify tokens.
 * Prints `READY {"port": <port>}`. `GET /stats` answers what the actors saw (not a gateway
 * route: the test's window into the server). Not a test file.
 */
import { Hono } from "hono";
import { type AuthOptions, createSystem, defineActor } from "../mod.ts";
import { gateway, type GatewayOptions } from "../adapters/hono/mod.ts";

const KIB = 1024;
const stats = {
  /** Calls that ran a handler. */
  ran: 0,
  /** Items the `big` handler produced. */
  produced: 0,
  /** Handler streams open now. */
  open: 0,
  /** Input items the `slow` duplex handler took. */
  taken: 0,
};

const Target = defineActor({
  name: "target",
  handlers: {
    echo(_ctx, v: unknown) {
      stats.ran++;
      return v;
    },
    /** `n` items of 256 KiB each, as fast as the consumer takes them. */
    async *big(_ctx, n: number) {
      stats.open++;
      try {
        for (let i = 0; i < n; i++) {
          stats.produced++;
          yield `${i}:${"x".repeat(256 * KIB)}`;
        }
      } finally {
        stats.open--;
      }
    },
    /** Duplex that ignores its input and sends 400 items of 256 KiB. */
    async *flood(_ctx, _input: AsyncIterable<unknown>) {
      stats.open++;
      try {
        for (let i = 0; i < 400; i++) {
          stats.produced++;
          yield `${i}:${"x".repeat(256 * KIB)}`;
        }
      } finally {
        stats.open--;
      }
    },
    /** Holds a stream open (a tick every 50 ms) until the consumer goes away. */
    async *hold(_ctx) {
      stats.open++;
      try {
        for (let i = 0;; i++) {
          yield i;
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        stats.open--;
      }
    },
    /** Duplex that takes one input item a second: a client that sends more runs ahead. */
    async *slow(_ctx, input: AsyncIterable<string>) {
      stats.open++;
      try {
        const it = input[Symbol.asyncIterator]();
        for (;;) {
          yield stats.taken;
          await new Promise((r) => setTimeout(r, 1000));
          const next = await it.next();
          if (next.done) return;
          stats.taken++;
        }
      } finally {
        stats.open--;
      }
    },
  },
});

const gatewayOptions = JSON.parse(Deno.env.get("TROUPE_GATEWAY") ?? "{}") as Partial<
  GatewayOptions
>;
const authJson = Deno.env.get("TROUPE_AUTH");
const auth = authJson ? JSON.parse(authJson) as AuthOptions : undefined;

const system = await createSystem({
  actors: [Target],
  logger: "warn",
  ...(auth ? { auth } : {}),
});
const app = new Hono();
app.get("/stats", (c) => c.json(stats));
app.route(
  "/api",
  gateway(system, {
    expose: [Target],
    ...gatewayOptions,
    ...(auth ? { auth: { ...gatewayOptions.auth, verify: auth } } : {}),
  }),
);
const stop = new AbortController();
const server = Deno.serve(
  {
    hostname: "127.0.0.1",
    port: 0,
    signal: stop.signal,
    onListen: ({ port }) => console.log(`READY ${JSON.stringify({ port })}`),
  },
  app.fetch,
);
Deno.addSignalListener("SIGTERM", () => stop.abort());
await server.finished;
await system.close();
