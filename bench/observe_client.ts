/**
 * The client side of bench/observe.ts, run as its own process (so that OpenTelemetry can be
 * on or off for it): loads Troupe from the checkout `BENCH_ROOT`, then measures remote asks
 * to the host node against raw NATS request/reply on the same server (throughput with 64 in
 * flight, p50 one at a time), and in-process asks one at a time. Prints `RESULT {json}`.
 *
 * Environment: `BENCH_ROOT` (a checkout's directory), `TROUPE_SERVERS`, `TROUPE_PREFIX`,
 * `BENCH_SECONDS` (per throughput measurement; default 2).
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import type { ActorDefinition, AnyActorTypes, SystemOptions } from "../mod.ts";
import { pct, throughput } from "./nats.ts";

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
const rawRuns: number[] = [];
const askRuns: number[] = [];
for (let round = 0; round < 3; round++) {
  rawRuns.push(await throughput(raw, seconds / 2));
  askRuns.push(await throughput(ask, seconds / 2));
}
const rawLat = await latencies(raw, 1500);
const askLat = await latencies(ask, 1500);
await nc.close();
await system.close();

// In-process asks, one at a time: the path where a fixed cost per message shows most.
const local = await createSystem({ actors: [BenchEcho] });
const localRef = local.ref(BenchEcho, "l1");
const localAsk = () => localRef.ask("ping" as never, PAYLOAD as never);
for (let i = 0; i < 20_000; i++) await localAsk();
const localRuns: number[] = [];
for (let round = 0; round < 3; round++) localRuns.push(await throughput(localAsk, 0.5, 1));
await local.close();

const result = {
  rawPerSec: pct(rawRuns, 0.5),
  askPerSec: pct(askRuns, 0.5),
  rawP50Ms: pct(rawLat, 0.5),
  askP50Ms: pct(askLat, 0.5),
  localPerSec: pct(localRuns, 0.5),
};
console.log(`RESULT ${JSON.stringify(result)}`);
Deno.exit(0);
