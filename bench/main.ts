/**
 * All benchmarks, each against its baseline measured in the same run. `deno task bench`.
 * Set BENCH_SKIP_NATS=1 to skip the cluster part (it starts nats-server processes).
 *
 * @module
 */
import { benchAsk, benchColdActivation } from "./runtime.ts";
import { benchActivation, benchDurableAsks, benchJournal } from "./journal.ts";
import { benchNats, natsReport } from "./nats.ts";

const f = (n: number) => n >= 100 ? Math.round(n).toLocaleString("en") : n.toFixed(2);
console.log(
  `Troupe benchmarks — ${new Date().toISOString()} — ${Deno.build.os} ${Deno.build.arch}, ` +
    `${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}\n`,
);

console.log("1. the durable path (libSQL file, synchronous=FULL): bench/journal.ts");
const durable = await benchDurableAsks({ rounds: 1 });
console.log(
  `   1000 actors × 20 emitting asks: ${f(durable.perSecond[0]!)}/s vs raw 1000-row batches ${
    f(durable.rawClient[0]!)
  } rows/s → ratio ${
    (durable.perSecond[0]! / durable.rawClient[0]!).toFixed(2)
  }; worst event-loop lateness ${durable.worstLatenessMs[0]!.toFixed(1)} ms`,
);
for (const r of await benchJournal({ actors: [1, 1000] })) {
  console.log(
    `   journal appends, ${String(r.actors).padStart(4)} actors: ${f(r.journalPerSec)}/s`,
  );
}
const act = await benchActivation();
console.log(
  `   journal activate() (snapshot + 100 events): p50 ${f(act.p50Ms)} ms, p99 ${f(act.p99Ms)} ms`,
);

console.log("\n2. in-process ask round trips, 100 actors without events (goal ≥ 200k/s)");
const ask = await benchAsk();
console.log(`   ${f(ask.perSecond)}/s (raw promise call ${f(ask.rawPerSecond)}/s)`);

console.log(
  "\n3. cold activation through the system (snapshot + 100 events, libSQL file; goal p50 ≤ 5 ms)",
);
const cold = await benchColdActivation();
console.log(
  `   p50 ${f(cold.p50)} ms, p99 ${f(cold.p99)} ms; warm ask p50 ${cold.warmP50.toFixed(3)} ms`,
);

if (!Deno.env.get("BENCH_SKIP_NATS")) {
  console.log("\n4. cluster on nats-server (node in another process, 64-byte payload)");
  for (const line of natsReport(await benchNats(), "   ")) console.log(line);
}
