/**
 * A host process of `bench/scale.ts`: one or more Troupe nodes (systems) hosting the `scale`
 * actor type on a NATS mesh, all sharing one libSQL journal file, plus a raw NATS responder
 * (queue group, same server) for the raw baseline. Prints `READY {json}` when everything
 * listens.
 *
 * Environment: `TROUPE_SERVERS` (NATS URLs, comma-separated), `TROUPE_JOURNAL` (libSQL URL),
 * `TROUPE_NODE` (node id, or the id prefix with several systems), `TROUPE_PREFIX`,
 * `TROUPE_LEASE_TTL` (ms), `SCALE_SYSTEMS` (nodes in this process, default 1).
 *
 * Commands on stdin, one a line:
 * - `MEM`: prints `MEM {"heap", "rss", "external"}` after two garbage collections (run the
 *   process with `--v8-flags=--expose-gc`);
 * - `QUIT`: closes the nodes gracefully and exits (as SIGTERM does).
 *
 * @module
 */
import { createSystem, type System } from "../mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { connect } from "@nats-io/transport-node";
import { Scale } from "./scale_actors.ts";

const env = (k: string) => Deno.env.get(k) || undefined;
const servers = env("TROUPE_SERVERS")!.split(",");
const prefix = env("TROUPE_PREFIX") ?? "scale";
const base = env("TROUPE_NODE") ?? "scale-node";
const leaseTtl = Number(env("TROUPE_LEASE_TTL") ?? 5000);
const count = Number(env("SCALE_SYSTEMS") ?? 1);

const journal = libsqlJournal({ url: env("TROUPE_JOURNAL")! });
const systems: System[] = [];
for (let i = 0; i < count; i++) {
  systems.push(
    await createSystem({
      actors: [Scale],
      journal,
      mesh: natsMesh({ servers, prefix, leaseTtl }),
      node: count === 1 ? base : `${base}-${i}`,
      maxActivations: 2_000_000,
      logger: "error",
    }),
  );
}
const raw = await connect({ servers, noAsyncTraces: true });
raw.subscribe(`${prefix}.raw`, {
  queue: "raw",
  callback: (_err, msg) => void msg.respond(msg.data),
});
await raw.flush();

let closing: Promise<void> | undefined;
const shutdown = () =>
  closing ??= (async () => {
    await Promise.all(systems.map((s) => s.close().catch(() => {})));
    await raw.close().catch(() => {});
    await journal.close().catch(() => {});
    console.log("CLOSED");
    Deno.exit(0);
  })();
Deno.addSignalListener("SIGTERM", shutdown);

async function memory(): Promise<Record<string, number>> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("Run with --v8-flags=--expose-gc");
  gc();
  await new Promise((r) => setTimeout(r, 100));
  gc();
  const m = Deno.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss, external: m.external };
}

console.log(`READY ${JSON.stringify({ nodes: systems.map((s) => s.node), pid: Deno.pid })}`);

let rest = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  rest += chunk;
  for (let i; (i = rest.indexOf("\n")) >= 0; rest = rest.slice(i + 1)) {
    const cmd = rest.slice(0, i).trim();
    if (cmd === "MEM") console.log(`MEM ${JSON.stringify(await memory())}`);
    else if (cmd === "QUIT") await shutdown();
  }
}
