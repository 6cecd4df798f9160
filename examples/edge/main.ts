/**
 * The gateway at the edge: a client node (it hosts no actors) that reaches the cluster over
 * WebSocket (`wss://` in production) and serves HTTP. It needs no file system, no
 * subprocess and no FFI: run it with `--allow-net --allow-env` only, or on Deno Deploy.
 *
 * Environment:
 * - `NATS_URL`: comma-separated WebSocket URLs of the NATS servers (`wss://nats.example:443`);
 * - `NATS_USER` and `NATS_PASS`, or `NATS_TOKEN`: credentials, when the servers want them;
 * - `TROUPE_PREFIX`: the cluster's subject prefix (default `troupe`);
 * - `TROUPE_NODE`: this node's id (default: random);
 * - `PORT` (default 8000) and `HOSTNAME` (default 0.0.0.0).
 *
 * It prints `READY {"port":…}` once it serves, drains on SIGTERM or SIGINT (readyz turns 503,
 * streams end, open requests get up to 5 s) and then closes the node.
 *
 * @module
 */
import { Hono } from "hono";
import { createSystem } from "../../mod.ts";
import { natsMesh, type NatsMeshOptions } from "../../adapters/nats/mod.ts";
import { gateway } from "../../adapters/hono/mod.ts";
import { Account, Transfer } from "../bank/actors.ts";

const env = (name: string) => Deno.env.get(name) || undefined;
const servers = env("NATS_URL")?.split(",").map((s) => s.trim()).filter(Boolean);
if (!servers?.length) {
  console.error("Set NATS_URL to the NATS servers' WebSocket URLs (wss://host:port)");
  Deno.exit(2);
}
const mesh: NatsMeshOptions = { servers };
const [user, pass, token, prefix] = [
  env("NATS_USER"),
  env("NATS_PASS"),
  env("NATS_TOKEN"),
  env("TROUPE_PREFIX"),
];
if (user !== undefined) mesh.user = user;
if (pass !== undefined) mesh.pass = pass;
if (token !== undefined) mesh.token = token;
if (prefix !== undefined) mesh.prefix = prefix;
const node = env("TROUPE_NODE");

// a client node: no actors, and the default in-memory journal (it writes nothing)
const system = await createSystem({
  actors: [],
  mesh: natsMesh(mesh),
  ...(node ? { node } : {}),
});
const draining = new AbortController();
const app = new Hono();
app.route(
  "/",
  gateway(system, {
    expose: { account: ["deposit", "withdraw", "balance"], transfer: ["run"] },
    actors: [Account, Transfer],
    signal: draining.signal,
  }),
);
const server = Deno.serve({
  hostname: env("HOSTNAME") ?? "0.0.0.0",
  port: Number(env("PORT") ?? 8000),
  onListen: ({ port }) => console.log(`READY ${JSON.stringify({ port, node: system.node })}`),
}, app.fetch);

let stopping = false;
/** Graceful stop: drain, let open requests finish (5 s at most), close the node, exit. */
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: draining`);
  const force = setTimeout(() => {
    console.error("shutdown took over 5 s: exiting");
    Deno.exit(1);
  }, 5_000);
  draining.abort();
  await server.shutdown();
  await system.close();
  clearTimeout(force);
  console.log("stopped");
  Deno.exit(0);
}
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  try {
    Deno.addSignalListener(signal, () => void stop(signal));
  } catch {
    // a runtime without signals (some edge platforms): it stops the isolate itself
  }
}
