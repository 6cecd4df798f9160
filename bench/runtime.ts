/**
 * Runtime benchmarks on one node (in-process mesh): ask round trips to 100 actors without
 * events, next to a raw baseline of the same work (a direct function call through a promise),
 * and cold activation of an actor with a snapshot + 100 events on a libSQL file.
 *
 * @module
 */
import { createSystem, defineActor } from "../mod.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { createClient } from "@libsql/client/node";
import { msgpack } from "../src/codec/mod.ts";

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

const Ledger = defineActor({
  name: "ledger",
  initialState: () => ({ total: 0, entries: 0 }),
  events: { added: (s, n: number) => ({ total: s.total + n, entries: s.entries + 1 }) },
  handlers: {
    add(ctx, n: number) {
      ctx.emit("added", n);
      return ctx.state.total;
    },
    total: (ctx) => ctx.state.total,
  },
  snapshotEvery: 150,
  idleAfter: 600_000,
});

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

/**
 * Durable appends through the system: 1000 actors (activated first) each send 5 sequential
 * emitting asks, all actors at once, on a libSQL file (group commit); vs the same 5000 rows
 * inserted raw in 5 write transactions of 1000 (one multi-row INSERT each) on the same schema.
 */
export async function benchDurableAsks(
  options: { actors?: number; asks?: number; rounds?: number } = {},
): Promise<{ perSecond: number; rawPerSecond: number; ratio: number }> {
  const actors = options.actors ?? 1000;
  const asks = options.asks ?? 5;
  const rounds = options.rounds ?? 3;
  const ours: number[] = [];
  const raws: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const dir = await Deno.makeTempDir({ prefix: "troupe-bench-" });
    try {
      const journal = libsqlJournal({ url: `file:${dir}/ours.db` });
      const system = await createSystem({ actors: [Ledger], journal });
      const refs = Array.from({ length: actors }, (_, i) => system.ref(Ledger, `l${i}`));
      await Promise.all(refs.map((r) => r.ask("total")));
      let t0 = performance.now();
      await Promise.all(refs.map(async (r) => {
        for (let k = 0; k < asks; k++) await r.ask("add", 1);
      }));
      ours.push((actors * asks) / ((performance.now() - t0) / 1000));
      await system.close();
      await journal.close();
      // raw: the journal's own schema, the same rows, 5 transactions of 1000 rows
      const url = `file:${dir}/raw.db`;
      const j = libsqlJournal({ url });
      await j.read("x", 1, 1);
      await j.close();
      const client = createClient({ url, intMode: "number", concurrency: 1 });
      await client.execute("PRAGMA journal_mode = WAL");
      await client.execute("PRAGMA synchronous = full");
      const data = msgpack.encode(1);
      const sql = `INSERT INTO events (actor, seq, type, version, data, at) VALUES ${
        Array.from({ length: actors }, () => "(?,?,?,?,?,?)").join(",")
      }`;
      t0 = performance.now();
      for (let k = 0; k < asks; k++) {
        const args = [];
        const at = Date.now();
        for (let a = 0; a < actors; a++) args.push(`ledger/l${a}`, k + 1, "added", 1, data, at);
        await client.batch([{ sql, args }], "write");
      }
      raws.push((actors * asks) / ((performance.now() - t0) / 1000));
      client.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const perSecond = med(ours);
  const rawPerSecond = med(raws);
  return { perSecond, rawPerSecond, ratio: perSecond / rawPerSecond };
}

if (import.meta.main) {
  const durable = await benchDurableAsks();
  console.log(
    `durable asks, 1000 actors × 5 sequential: ${
      Math.round(durable.perSecond)
    }/s vs raw 5 × 1000 ` +
      `rows ${Math.round(durable.rawPerSecond)}/s → ratio ${durable.ratio.toFixed(2)}`,
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
