/**
 * What one clock costs (issue 17), each against a baseline measured in the same run:
 *
 * 1. in-process asks whose handler awaits (so the call arms an entry of the node's timer wheel
 *    and removes it when answered), one at a time and 256 in flight, vs the same loop over a
 *    raw promise call;
 * 2. a node on a virtual clock: how long `advance()` takes for an hour of its background work
 *    (heartbeats, lease renewals, the reminder and idle polls) and for a reminder an hour out.
 *
 * `deno run -A bench/clock.ts`. `TROUPE_ROOT=<checkout>` measures part 1 on another checkout
 * (run with `--config <checkout>/deno.json`), to compare with the wheel before this issue.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import process from "node:process";

const root = Deno.env.get("TROUPE_ROOT") ?? new URL("..", import.meta.url).pathname;
const troupe = await import(`${root}/mod.ts`) as typeof import("../mod.ts");
const { createSystem, defineActor } = troupe;

const Waiter = defineActor({
  name: "waiter",
  handlers: {
    async ping(_ctx, n: number) {
      await null; // answered after a microtask: the call gets its deadline entry
      return n;
    },
  },
});

/**
 * Calls per second of `fn` with `inflight` loops for `ms`, after `warmMs` of the same, and the
 * process's CPU time per call in µs (what other processes on the machine change least).
 */
async function rate(
  fn: (i: number) => Promise<unknown>,
  inflight: number,
  ms: number,
  warmMs = 500,
): Promise<{ perSecond: number; cpuUs: number }> {
  const loop = async (until: number) => {
    let count = 0;
    await Promise.all(Array.from({ length: inflight }, async (_, w) => {
      let i = w;
      while (performance.now() < until) {
        for (let k = 0; k < 64; k++) await fn(i++);
        count += 64;
        // a macrotask turn now and then, as any real load has: the node's heartbeats run
        await new Promise((r) => setImmediate(r));
      }
    }));
    return count;
  };
  await loop(performance.now() + warmMs);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const count = await loop(t0 + ms);
  const cpu = process.cpuUsage(cpu0);
  return {
    perSecond: count / ((performance.now() - t0) / 1000),
    cpuUs: (cpu.user + cpu.system) / count,
  };
}

const f = (n: number) => Math.round(n).toLocaleString("en");
console.log(
  `clock bench — ${
    new Date().toISOString()
  } — ${Deno.build.os} ${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, ${root}`,
);

const system = await createSystem({ actors: [Waiter], logger: "error" });
const refs = Array.from({ length: 100 }, (_, i) => system.ref(Waiter, `w${i}`));
for (const r of refs) await r.ask("ping", 0);
for (const inflight of [1, 256]) {
  const asks = await rate((i) => refs[i % refs.length]!.ask("ping", i), inflight, 2_000);
  const raw = await rate((i) => Promise.resolve(i), inflight, 2_000);
  console.log(
    `1. awaiting asks, ${String(inflight).padStart(3)} in flight: ${f(asks.perSecond)}/s, ${
      asks.cpuUs.toFixed(2)
    } µs CPU each (raw ${f(raw.perSecond)}/s, ${raw.cpuUs.toFixed(3)} µs)`,
  );
}
await system.close();

if (!Deno.env.get("TROUPE_ROOT")) {
  const { virtualClock } = await import("../adapters/testing/mod.ts");
  const Alarm = defineActor({
    name: "alarm",
    initialState: () => ({ rang: 0 }),
    events: { rang: (s) => ({ rang: s.rang + 1 }) },
    handlers: {
      set: (ctx, ms: number) => ctx.schedule(ms, "ring", undefined),
      ring: (ctx) => ctx.emit("rang", undefined),
      rang: (ctx) => ctx.state.rang,
    },
  });
  for (let run = 0; run < 3; run++) {
    const clock = virtualClock(new Date("2026-01-01T00:00:00Z"));
    const s = await createSystem({ actors: [Alarm], clock, logger: "error" });
    let timers = 0;
    const set = clock.setTimeout;
    const every = clock.setInterval;
    clock.setTimeout = (fn, ms) => set(() => (timers++, fn()), ms);
    clock.setInterval = (fn, ms) => every(() => (timers++, fn()), ms);
    await s.ref(Alarm, "a").ask("set", 3_600_000);
    const t0 = performance.now();
    await clock.advance(3_600_000);
    const took = performance.now() - t0;
    const rang = await s.ref(Alarm, "a").ask("rang");
    console.log(
      `2. one node, a virtual hour with a reminder at its end: ${
        took.toFixed(0)
      } ms of real time, ${f(timers)} timers run (${
        (took * 1000 / timers).toFixed(1)
      } µs each), rang ${rang}`,
    );
    await s.close();
  }
}
