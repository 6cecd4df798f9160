/**
 * The client side of bench/observe.ts, run as its own process (so that OpenTelemetry can be
 * on or off for it): loads Troupe from the checkout `BENCH_ROOT`, then measures remote asks
 * to the host node against raw NATS request/reply on the same server (throughput with 64 in
 * flight and the CPU time per call of both processes, p50 one at a time), and in-process asks
 * one at a time (rate and CPU time per call). Prints `RESULT {json}`.
 *
 * Environment: `BENCH_ROOT` (a checkout's directory), `BENCH_HOST_PID`, `TROUPE_SERVERS`,
 * `TROUPE_PREFIX`, `BENCH_SECONDS` (per throughput measurement; default 2).
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import type { ActorDefinition, SystemOptions } from "../mod.ts";
import type { AnyActorTypes } from "../spi.ts";
import { pct } from "./nats.ts";

const root = Deno.env.get("BENCH_ROOT")!;
const servers = Deno.env.get("TROUPE_SERVERS")!;
const prefix = Deno.env.get("TROUPE_PREFIX") ?? "bench";
const seconds = Number(Deno.env.get("BENCH_SECONDS") ?? 2);
const url = (path: string) => new URL(path, `file://${root}/`).href;

type Mod = typeof import("../mod.ts");
type NatsMod = typeof import("../adapters/nats/mod.ts");
const { createSystem } = await import(url("mod.ts")) as Mod;
const { natsMesh } = await import(url("adapters/nats/mod.ts")) as NatsMod;
const { BenchEcho } = await import(url("bench/actors.ts")) as {
  BenchEcho: ActorDefinition<AnyActorTypes>;
};

const PAYLOAD = new Uint8Array(64).fill(7);
const options: SystemOptions = { mesh: natsMesh({ servers, prefix, leaseTtl: 2000 }) };
const system = await createSystem(options);
const nc = await connect({ servers, noAsyncTraces: true });
const raw = () => nc.request("bench.raw", PAYLOAD, { timeout: 5000 });
const ref = system.ref(BenchEcho, "warm");
const ask = () => ref.ask("ping" as never, PAYLOAD as never, { timeout: 5000 });

/** CPU time (user + system) of process `pid` so far, ms (10 ms resolution). */
function cpuMs(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

const hostPid = Number(Deno.env.get("BENCH_HOST_PID"));

/**
 * Throughput of `fn` with 64 in flight, and the CPU time it took in this process and the host
 * process together, µs per call: unlike wall time, barely moved by other load on the machine.
 */
async function measure(fn: () => Promise<unknown>, secs: number) {
  const c0 = cpuMs("self") + cpuMs(hostPid);
  let count = 0;
  const t0 = performance.now();
  const until = t0 + secs * 1000;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (performance.now() < until) {
      await fn();
      count++;
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuMs("self") + cpuMs(hostPid) - c0;
  return { perSec: count / wall, cpuUs: (cpu * 1000) / count };
}

async function latencies(fn: () => Promise<unknown>, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

for (let i = 0; i < 300; i++) await Promise.all([raw(), ask()]);
const rawRuns: { perSec: number; cpuUs: number }[] = [];
const askRuns: { perSec: number; cpuUs: number }[] = [];
for (let round = 0; round < 3; round++) {
  rawRuns.push(await measure(raw, seconds / 2));
  askRuns.push(await measure(ask, seconds / 2));
}
const rawLat = await latencies(raw, 1500);
const askLat = await latencies(ask, 1500);
await nc.close();
await system.close();

// In-process asks, one at a time: the path where a fixed cost per message shows most. The loop
// yields to the event loop every 1000 asks (the node's lease timers must run).
const local = await createSystem({ actors: [BenchEcho], leaseTtl: 600_000 });
const localRef = local.ref(BenchEcho, "l1");
const localAsk = () => localRef.ask("ping" as never, PAYLOAD as never);
const yieldNow = () => new Promise((r) => setTimeout(r, 0));
for (let i = 0; i < 20_000; i++) {
  await localAsk();
  if (i % 1000 === 0) await yieldNow();
}
const localRuns: number[] = [];
const localCpu: number[] = [];
for (let round = 0; round < 3; round++) {
  const c0 = cpuMs("self");
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < 1000) {
    for (let i = 0; i < 1000; i++) await localAsk();
    n += 1000;
    await yieldNow();
  }
  localRuns.push(n / ((performance.now() - t0) / 1000));
  localCpu.push(((cpuMs("self") - c0) * 1000) / n);
}
await local.close();

const result = {
  rawPerSec: pct(rawRuns.map((r) => r.perSec), 0.5),
  askPerSec: pct(askRuns.map((r) => r.perSec), 0.5),
  rawCpuUs: pct(rawRuns.map((r) => r.cpuUs), 0.5),
  askCpuUs: pct(askRuns.map((r) => r.cpuUs), 0.5),
  rawP50Ms: pct(rawLat, 0.5),
  askP50Ms: pct(askLat, 0.5),
  localPerSec: pct(localRuns, 0.5),
  localCpuUs: pct(localCpu, 0.5),
};
console.log(`RESULT ${JSON.stringify(result)}`);
Deno.exit(0);
