/**
 * Payload schemas on the message path: in-process ask round trips to 100 actors (256 callers)
 * whose handler takes `{ amount }` with no schema, with a Zod schema and with a Valibot schema,
 * next to a raw baseline (a direct call through a promise) and the schema libraries' own
 * `validate` in a loop, per second of CPU time. Run alone:
 * `deno run -A bench/schema.ts [seconds] [rounds]`.
 *
 * @module
 */
import { z } from "zod";
import * as v from "valibot";
import { cpuUsage } from "node:process";
import { createSystem, defineActor } from "../mod.ts";
import type { StandardSchemaV1 } from "../spi.ts";

const zod = z.object({ amount: z.number().positive() });
const vali = v.object({ amount: v.pipe(v.number(), v.minValue(0)) });

const Plain = defineActor({
  name: "plain",
  initialState: () => 0,
  handlers: { add: (ctx, p: { amount: number }) => (ctx.state += p.amount) },
});
const Zod = defineActor({
  name: "zod",
  initialState: () => 0,
  handlers: { add: { input: zod, handle: (ctx, p) => (ctx.state += p.amount) } },
});
const Vali = defineActor({
  name: "vali",
  initialState: () => 0,
  handlers: { add: { input: vali, handle: (ctx, p) => (ctx.state += p.amount) } },
});

/**
 * Operations per second of CPU time this process used (user + system): steadier than per
 * second of wall time on a machine shared with other work.
 */
async function rate(seconds: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let count = 0;
  const until = performance.now() + seconds * 1000;
  const c0 = cpuUsage();
  await Promise.all(Array.from({ length: 256 }, async (_, w) => {
    let i = w;
    while (performance.now() < until) {
      for (let k = 0; k < 64; k++) await fn(i++);
      count += 64;
    }
  }));
  const c = cpuUsage(c0);
  return count / ((c.user + c.system) / 1e6);
}

function validateRate(schema: StandardSchemaV1, seconds: number): number {
  let n = 0;
  const until = performance.now() + seconds * 1000;
  const c0 = cpuUsage();
  while (performance.now() < until) {
    for (let k = 0; k < 1000; k++) schema["~standard"].validate({ amount: k + 1 });
    n += 1000;
  }
  const c = cpuUsage(c0);
  return n / ((c.user + c.system) / 1e6);
}

const pause = () => new Promise((r) => setTimeout(r, 100));

/**
 * Asks per second for each variant, and validations per second of each library alone. Each
 * variant gets a node of its own: a loop of asks answered without a macrotask starves the
 * node's timers (its lease) while it runs, so a run stays shorter than the lease.
 */
export async function benchSchemas(seconds = 2): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const def of [Plain, Zod, Vali]) {
    const system = await createSystem({ actors: [def] });
    try {
      const refs = Array.from({ length: 100 }, (_, i) => system.ref(def, `a${i}`));
      for (const r of refs) await r.ask("add", { amount: 1 }); // activate first
      await rate(0.3, (i) => refs[i % 100]!.ask("add", { amount: 1 })); // warm up
      await pause();
      out[def.name] = await rate(seconds, (i) => refs[i % 100]!.ask("add", { amount: 1 }));
      await pause();
    } finally {
      await system.close();
    }
  }
  const state = Array.from({ length: 100 }, () => 0);
  out.raw = await rate(seconds, (i) => Promise.resolve(state[i % 100]! += 1));
  out.zodValidate = validateRate(zod, seconds);
  out.valibotValidate = validateRate(vali, seconds);
  return out;
}

if (import.meta.main) {
  const seconds = Number(Deno.args[0] ?? 2);
  const rounds = Number(Deno.args[1] ?? 3);
  for (let r = 1; r <= rounds; r++) {
    const f = await benchSchemas(seconds);
    const k = (x: number) => `${Math.round(x / 1000)}k/cpu-s`;
    console.log(
      `round ${r}: asks plain ${k(f.plain!)}, zod ${k(f.zod!)} (${
        (f.zod! / f.plain!).toFixed(2)
      }), valibot ${k(f.vali!)} (${(f.vali! / f.plain!).toFixed(2)}); raw ${k(f.raw!)}; ` +
        `validate alone: zod ${k(f.zodValidate!)}, valibot ${k(f.valibotValidate!)}`,
    );
  }
}
