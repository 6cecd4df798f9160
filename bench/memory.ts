/**
 * Memory of idle active actors (a small state, no events written): heap growth per actor after
 * activating N of them, on the in-process mesh and on a real nats-server. Run with
 * `deno run -A --v8-flags=--expose-gc bench/memory.ts [N]`.
 *
 * @module
 */
import { createSystem, defineActor } from "../mod.ts";
import type { Mesh } from "../spi.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";

const Reg = defineActor({
  name: "reg",
  initialState: () => ({ v: 0 }),
  events: { set: (_s, v: number) => ({ v }) },
  handlers: { get: (ctx) => ctx.state.v },
  idleAfter: 600_000,
});

async function settle(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await new Promise((r) => setTimeout(r, 100));
  gc?.();
  return Deno.memoryUsage().heapUsed;
}

/** Heap bytes per idle actor, measured over `n` activations after a warm-up. */
export async function benchIdleMemory(n: number, mesh?: Mesh): Promise<number> {
  const system = await createSystem({
    actors: [Reg],
    maxActivations: n + 10_000,
    ...(mesh ? { mesh } : {}),
  });
  try {
    const batch = async (prefix: string, count: number) => {
      for (let i = 0; i < count; i += 500) {
        await Promise.all(
          Array.from({ length: 500 }, (_, k) => system.ref(Reg, `${prefix}${i + k}`).ask("get")),
        );
      }
    };
    await batch("w", 2000);
    const before = await settle();
    await batch("r", n);
    return Math.round(((await settle()) - before) / n);
  } finally {
    await system.close();
  }
}

if (import.meta.main) {
  const n = Number(Deno.args[0] ?? 100_000);
  console.log(`idle actor, in-process mesh, ${n} actors: ${await benchIdleMemory(n)} B each`);
  await using cluster = await startNatsCluster({ servers: 1 });
  const mesh = natsMesh({ servers: cluster.urls[0]!, prefix: "mem" });
  console.log(`idle actor, NATS mesh, ${n} actors: ${await benchIdleMemory(n, mesh)} B each`);
}
