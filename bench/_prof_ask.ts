// Profiling harness (not a benchmark): asks with an object payload for a few seconds, the host in
// another process (its profile too, when PROF_HOST=1).
import { createSystem } from "../mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { BenchEcho, BenchWorker } from "./actors.ts";

await using cluster = await startNatsCluster({ servers: 1 });
const env = {
  TROUPE_SERVERS: cluster.urls[0]!,
  TROUPE_PREFIX: "bench",
  TROUPE_NODE: "bench-host",
};
const args = ["run", "-A"];
if (Deno.env.get("PROF_HOST")) args.push("--cpu-prof", "--cpu-prof-dir=/tmp/prof/host");
const proc = new Deno.Command(Deno.execPath(), {
  args: [...args, new URL("./nats_node.ts", import.meta.url).pathname],
  env,
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
for (let buf = ""; !buf.includes("READY");) buf += (await reader.read()).value ?? "";
const sys = await createSystem({ mesh: natsMesh({ servers: cluster.urls[0]!, prefix: "bench" }) });
const payload = { user: "alice", amount: 42, note: "x".repeat(64) };
const worker = Deno.env.get("PROF_WORKER") !== undefined;
const ref = worker ? sys.ref(BenchWorker) : sys.ref(BenchEcho, "p");
let n = 0;
const until = performance.now() + Number(Deno.env.get("PROF_SECONDS") ?? 8) * 1000;
await Promise.all(Array.from({ length: 64 }, async () => {
  while (performance.now() < until) {
    await ref.ask("ping", payload as unknown as Uint8Array);
    n++;
  }
}));
console.log(`${Math.round(n / Number(Deno.env.get("PROF_SECONDS") ?? 8))}/s`);
await sys.close();
proc.kill("SIGTERM");
await proc.status;
void reader.cancel();
