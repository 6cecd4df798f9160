// Profiling harness (not a benchmark): 1000 actors × PROF_ASKS (default 200) sequential emitting
// asks, 3 rounds, each with its asks/s and the CPU per ask of each thread (main, V8's helper
// threads, the journal's database worker; Linux /proc). PROF_JOURNAL=memory for the memory journal;
// PROF_CPU=<file> / PROF_ALLOC=<file>: a CPU or allocation profile of the last round (PROF_INTERVAL:
// bytes between allocation samples, default 1024) (read it with
// bench/_prof_top.ts); PROF_THREADS=1 lists every thread. Or the whole run:
// `deno run -A --cpu-prof --cpu-prof-dir=<dir> bench/_prof_durable.ts` (the worker's profile too).
// PROF_SYNC=normal opens the file with `synchronous = NORMAL` (no fsync per commit).
import { createSystem } from "../mod.ts";
import { Ledger } from "./actors.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import {
  startAllocProfile,
  startCpuProfile,
  stopAllocProfile,
  stopCpuProfile,
} from "./_alloc_prof.ts";
const ALLOC = Deno.env.get("PROF_ALLOC");
const CPU = Deno.env.get("PROF_CPU");

const dir = await Deno.makeTempDir();
const mem = Deno.env.get("PROF_JOURNAL") === "memory";
const journal = mem ? undefined : libsqlJournal({
  url: `file:${dir}/p.db`,
  synchronous: Deno.env.get("PROF_SYNC") === "normal" ? "normal" : "full",
});
const system = await createSystem({
  actors: [Ledger],
  ...(journal ? { journal } : {}),
  logger: "warn",
});
const asks = Number(Deno.env.get("PROF_ASKS") ?? 200);
const refs = Array.from({ length: 1000 }, (_, i) => system.ref(Ledger, `l${i}`));
await Promise.all(refs.map((r) => r.ask("total")));
/** CPU seconds of this process's main thread (Linux). */
function mainCpu(): number {
  const stat = Deno.readTextFileSync(`/proc/self/task/${Deno.pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}
/** CPU seconds of each thread of this process, by name and tid. */
function threads(): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of Deno.readDirSync("/proc/self/task")) {
    try {
      const stat = Deno.readTextFileSync(`/proc/self/task/${e.name}/stat`);
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(`${name}:${e.name}`, (Number(f[11]) + Number(f[12])) / 100);
    } catch { /* gone */ }
  }
  return out;
}
for (let round = 0; round < 3; round++) {
  if (round === 2 && ALLOC) await startAllocProfile(Number(Deno.env.get("PROF_INTERVAL") ?? 1024));
  if (round === 2 && CPU) await startCpuProfile(100);
  const t0 = performance.now();
  const c0 = mainCpu();
  const th0 = threads();
  await Promise.all(refs.map(async (r) => {
    for (let k = 0; k < asks; k++) await r.ask("add", 1);
  }));
  const s = (performance.now() - t0) / 1000;
  if (round === 2 && ALLOC) await stopAllocProfile(ALLOC);
  if (round === 2 && CPU) await stopCpuProfile(CPU);
  const cpu = (mainCpu() - c0) * 1e6 / (1000 * asks);
  let total = 0, gc = 0, worker = 0;
  for (const [k, v] of threads()) {
    const d = v - (th0.get(k) ?? 0);
    total += d;
    if (k.startsWith("V8")) gc += d;
    if (k.startsWith("worker")) worker += d;
  }
  const per = (x: number) => (x * 1e6 / (1000 * asks)).toFixed(1);
  console.log(`  cpu µs/ask: total ${per(total)}, V8 helpers ${per(gc)}, db worker ${per(worker)}`);
  if (Deno.env.get("PROF_THREADS")) {
    for (const [k, v] of threads()) {
      const d = v - (th0.get(k) ?? 0);
      if (d > 0.01) console.log(`  ${k}: ${(d / s * 100).toFixed(0)}% of the round`);
    }
  }
  console.log(
    `round ${round}: ${Math.round(1000 * asks / s)}/s, main thread ${cpu.toFixed(1)} µs/ask`,
  );
}
await system.close();
await journal?.close();
await Deno.remove(dir, { recursive: true });
