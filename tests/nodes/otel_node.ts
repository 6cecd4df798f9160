/**
 * A node process for the OpenTelemetry tests (tests/otel_test.ts), run with `OTEL_DENO=true`
 * by the test. `TROUPE_ROLE` picks what it is:
 * - `orders`: hosts `Order` (its `place` asks `Stock` on another node); NATS, shared libSQL;
 * - `stock`: hosts `Stock`; NATS, shared libSQL;
 * - `client`: hosts nothing, serves the HTTP gateway for `Order` on a free loopback port and
 *   prints `READY {"node", "port"}`;
 * - `reminder`: alone (in-process mesh, memory journal), hosts `Timer`, asks `timer/t1.later`
 *   (which schedules a reminder of `fire`) once ready.
 *
 * Environment: see tests/nodes/_node.ts (`TROUPE_SERVERS`, `TROUPE_JOURNAL`, `TROUPE_NODE`).
 */
import { ActorError, createSystem, defineActor } from "../../mod.ts";
import { natsMesh } from "../../adapters/nats/mod.ts";
import { gateway } from "../../adapters/hono/mod.ts";
import { startNode } from "./_node.ts";
import { Hono } from "hono";

export const Stock = defineActor({
  name: "stock",
  initialState: () => ({ reserved: 0 }),
  events: { reserved: (s, e: { n: number }) => ({ reserved: s.reserved + e.n }) },
  handlers: {
    reserve(ctx, n: number) {
      ctx.emit("reserved", { n });
      return ctx.state.reserved;
    },
  },
});

export const Order = defineActor({
  name: "order",
  initialState: () => ({ items: [] as string[] }),
  events: { placed: (s, e: { item: string }) => ({ items: [...s.items, e.item] }) },
  handlers: {
    async place(ctx, item: string) {
      const reserved = await ctx.ref(Stock, item).ask("reserve", 1);
      ctx.emit("placed", { item });
      return { items: ctx.state.items.length, reserved };
    },
    refuse(_ctx, why: string) {
      throw new ActorError(`refused: ${why}`, { code: "refused" });
    },
    crash() {
      throw new Error("a bug in order.crash");
    },
    note(_ctx, _text: string) {},
  },
});

export const Timer = defineActor({
  name: "timer",
  initialState: () => ({ fired: 0 }),
  events: { fired: (s) => ({ fired: s.fired + 1 }) },
  handlers: {
    later(ctx) {
      ctx.schedule(10, "fire");
    },
    fire(ctx) {
      ctx.emit("fired", {});
      console.log("FIRED");
    },
  },
});

const role = Deno.env.get("TROUPE_ROLE");
if (role === "orders") await startNode("orders", [Order]);
else if (role === "stock") await startNode("stock", [Stock]);
else if (role === "client") {
  const servers = Deno.env.get("TROUPE_SERVERS")!.split(",");
  const node = Deno.env.get("TROUPE_NODE") ?? "client";
  const system = await createSystem({ node, mesh: natsMesh({ servers }), logger: "error" });
  const app = new Hono();
  app.route("/api", gateway(system, { expose: { order: ["place", "refuse", "crash", "note"] } }));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  Deno.addSignalListener("SIGTERM", async () => {
    await server.shutdown();
    await system.close();
    Deno.exit(0);
  });
  console.log(`READY ${JSON.stringify({ node, port: (server.addr as Deno.NetAddr).port })}`);
} else if (role === "reminder") {
  const system = await createSystem({ node: "solo", actors: [Timer], logger: "error" });
  Deno.addSignalListener("SIGTERM", async () => {
    await system.close();
    Deno.exit(0);
  });
  await system.ref(Timer, "t1").ask("later");
  console.log(`READY ${JSON.stringify({ node: "solo" })}`);
} else {
  console.error(`otel_node: unknown TROUPE_ROLE "${role}"`);
  Deno.exit(2);
}
