// Profiling harness (not a benchmark): asks with an object payload for a few seconds, the host in
// another process (its profile too, when PROF_HOST=1).
// CPU: `deno run -A --cpu-prof --cpu-prof-dir=/tmp/prof/client bench/_prof_ask.ts` (PROF_HOST=1:
// the host's in /tmp/prof/host). Allocations: PROF_ALLOC=<dir> samples every allocation of the
// measured asks in both processes (bench/_alloc_prof.ts) into <dir>/client.heapprofile and
// <dir>/host.heapprofile. Read either with `deno run -A bench/_prof_top.ts <file> <asks>`.
// PROF_CPU=<dir>: CPU profiles of the measured asks only (no start-up, warm-up or shutdown) into
// <dir>/client.cpuprofile and <dir>/host.cpuprofile.
// PROF_ACTORS=<n> spreads the asks over n actors; PROF_WORKER=1 asks the stateless worker.
import { createSystem } from "../mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { BenchEcho, BenchWorker } from "./actors.ts";
import {
  startAllocProfile,
  startCpuProfile,
  stopAllocProfile,
  stopCpuProfile,
} from "./_alloc_prof.ts";

await using cluster = await startNatsCluster({ servers: 1 });
const env = {
  TROUPE_SERVERS: cluster.urls[0]!,
  TROUPE_PREFIX: "bench",
  TROUPE_NODE: "bench-host",
  ...(Deno.env.get("PROF_CPU") ? { PROF_CPU: `${Deno.env.get("PROF_CPU")}/host.cpuprofile` } : {}),
  ...(Deno.env.get("PROF_ALLOC")
    ? { PROF_ALLOC: `${Deno.env.get("PROF_ALLOC")}/host.heapprofile` }
    : {}),
};
const alloc = Deno.env.get("PROF_ALLOC");
const cpu = Deno.env.get("PROF_CPU");
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
// PROF_ACTORS=<n>: asks spread over n actors (each ask to the next one) instead of one.
const actors = Number(Deno.env.get("PROF_ACTORS") ?? 1);
const refs = Array.from(
  { length: actors },
  (_, i) => worker ? sys.ref(BenchWorker) : sys.ref(BenchEcho, `p${i}`),
);
let next = 0;
const ref = { ask: (h: "ping", p: Uint8Array) => refs[next = (next + 1) % actors]!.ask(h, p) };
// Warm up (JIT, activations) before anything is measured.
for (let i = 0; i < Math.max(2000, actors); i += 64) {
  await Promise.all(
    Array.from({ length: 64 }, () => ref.ask("ping", payload as unknown as Uint8Array)),
  );
}
if (alloc || cpu) {
  proc.kill("SIGUSR1"); // the host starts sampling too
  await (alloc ? startAllocProfile() : startCpuProfile());
  await new Promise((r) => setTimeout(r, 200));
}
let n = 0;
const until = performance.now() + Number(Deno.env.get("PROF_SECONDS") ?? 8) * 1000;
await Promise.all(Array.from({ length: 64 }, async () => {
  while (performance.now() < until) {
    await ref.ask("ping", payload as unknown as Uint8Array);
    n++;
  }
}));
console.log(`${Math.round(n / Number(Deno.env.get("PROF_SECONDS") ?? 8))}/s, ${n} asks measured`);
if (alloc) await stopAllocProfile(`${alloc}/client.heapprofile`);
if (cpu) await stopCpuProfile(`${cpu}/client.cpuprofile`);
await sys.close();
proc.kill("SIGTERM");
await proc.status;
void reader.cancel();
