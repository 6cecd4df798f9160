/**
 * Runtime benchmarks on one node (in-process mesh): ask round trips to 100 actors without
 * events, next to a raw baseline of the same work (a direct function call through a promise),
 * and cold activation of an actor with a snapshot + 100 events on a libSQL file.
 *
 * @module
 */
import { benchDurableAsks } from "./journal.ts";
import { createSystem, defineActor } from "../mod.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { ledger } from "./actors.ts";

const Echo = defineActor({
  name: "echo",
  initialState: () => ({ n: 0 }),
  handlers: {
    ping(ctx, x: number) {
      ctx.state.n++;
      return x;
    },
  },
});

/** Ask round trips per second to `actors` actors with `inflight` concurrent callers. */
export async function benchAsk(
  options: { actors?: number; seconds?: number; inflight?: number } = {},
): Promise<{ perSecond: number; rawPerSecond: number; ratio: number }> {
  const actors = options.actors ?? 100;
  const seconds = options.seconds ?? 2;
  const inflight = options.inflight ?? 256;
  const system = await createSystem({ actors: [Echo] });
  const refs = Array.from({ length: actors }, (_, i) => system.ref(Echo, `e${i}`));
  for (const r of refs) await r.ask("ping", 0);
  const run = async (fn: (i: number) => Promise<unknown>) => {
    let count = 0;
    const until = performance.now() + seconds * 1000;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: inflight }, async (_, w) => {
      let i = w;
      while (performance.now() < until) {
        for (let k = 0; k < 64; k++) await fn(i++);
        count += 64;
      }
    }));
    return count / ((performance.now() - t0) / 1000);
  };
  const perSecond = await run((i) => refs[i % actors]!.ask("ping", i));
  const state = Array.from({ length: actors }, () => ({ n: 0 }));
  const raw = (i: number) => {
    state[i % actors]!.n++;
    return Promise.resolve(i);
  };
  const rawPerSecond = await run(raw);
  await system.close();
  return { perSecond, rawPerSecond, ratio: perSecond / rawPerSecond };
}

const Ledger = ledger(150); // a snapshot at seq 150 (cold activation: snapshot + 100 events)

/**
 * Cold activation through the whole system (ownership claim, journal epoch bump, snapshot +
 * 100 events read and replayed, first message) on a libSQL file: p50/p99 ms, vs a warm ask.
 */
export async function benchColdActivation(
  options: { samples?: number } = {},
): Promise<{ p50: number; p99: number; warmP50: number }> {
  const samples = options.samples ?? 200;
  const dir = await Deno.makeTempDir({ prefix: "troupe-bench-" });
  const url = `file:${dir}/activation.db`;
  try {
    {
      const journal = libsqlJournal({ url });
      const system = await createSystem({ actors: [Ledger], journal });
      await Promise.all(Array.from({ length: samples }, async (_, i) => {
        const r = system.ref(Ledger, `l${i}`);
        // a snapshot at seq 150, then 100 events after it
        for (let k = 0; k < 250; k++) await r.ask("add", 1);
      }));
      await system.close();
      await journal.close();
    }
    const journal = libsqlJournal({ url });
    const system = await createSystem({ actors: [Ledger], journal });
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < samples; i++) {
      const r = system.ref(Ledger, `l${i}`);
      let t0 = performance.now();
      await r.ask("total");
      cold.push(performance.now() - t0);
      t0 = performance.now();
      await r.ask("total");
      warm.push(performance.now() - t0);
    }
    await system.close();
    await journal.close();
    const pct = (xs: number[], p: number) => xs.sort((a, b) => a - b)[Math.floor(xs.length * p)]!;
    return { p50: pct(cold, 0.5), p99: pct(cold, 0.99), warmP50: pct(warm, 0.5) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Durable asks through the system: see `bench/journal.ts`. */
export { benchDurableAsks };

if (import.meta.main) {
  const durable = await benchDurableAsks({ rounds: 1 });
  console.log(
    `durable asks, 1000 actors × 20 sequential: ${Math.round(durable.perSecond[0]!)}/s vs raw ` +
      `1000-row batches ${Math.round(durable.rawClient[0]!)} rows/s → ratio ${
        (durable.perSecond[0]! / durable.rawClient[0]!).toFixed(2)
      }`,
  );
  const ask = await benchAsk();
  console.log(
    `in-process ask, 100 actors: ${Math.round(ask.perSecond)}/s ` +
      `(raw promise call ${Math.round(ask.rawPerSecond)}/s, ratio ${ask.ratio.toFixed(3)})`,
  );
  const cold = await benchColdActivation();
  console.log(
    `cold activation (snapshot + 100 events, libSQL file): p50 ${cold.p50.toFixed(2)} ms, ` +
      `p99 ${cold.p99.toFixed(2)} ms; warm ask p50 ${cold.warmP50.toFixed(3)} ms`,
  );
}
