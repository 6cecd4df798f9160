/**
 * The transactional outbox's cost per turn, on a libSQL file journal (WAL, `synchronous=FULL`),
 * with the in-process mesh and with a nats-server (JetStream, loopback, file store): asks whose
 * handler
 *
 * - **emit**: emits one event (the baseline);
 * - **emit + outbox**: emits one event and `ctx.publish(topic, payload, { durable: true })` —
 *   the message is stored in the same commit, then forwarded to the durable topic and deleted
 *   from the outbox (a second, group-committed write);
 * - **emit, then publish**: emits one event, and the caller then awaits `system.publish(topic,
 *   payload, { durable: true })` — what one writes without an outbox (not transactional: a
 *   crash between the two loses the message), for reference.
 *
 * With 1 caller (one actor, one ask at a time) and 64 callers (each its own actor). A phase
 * runs `n` asks and, for the outbox, ends when the outbox is empty again (every message
 * forwarded): the turn rate counts that time too. Rounds alternate the modes (3 each by
 * default, median and range kept) after a warm-up of each. Per turn: latency of the ask (p50,
 * p99), and CPU time of this process (all threads: the journal's database thread included) and
 * of the nats-server, from `/proc/<pid>/stat`. At the end every message is checked to have been
 * delivered once to a durable subscription.
 *
 * `deno run -A bench/outbox.ts [--rounds=3] [--skip-nats] [--seq=1500] [--par=20000]`
 *
 * @module
 */

import { createSystem, defineActor, inProcessMesh, type System } from "../mod.ts";
import type { Journal } from "../spi.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { cpuMicros, loadAverage, quantile } from "./_proc.ts";

const TOPIC = "orders.placed";
const ORDER = { order: 4217, sku: "book-978-0", qty: 2, note: "x".repeat(80) };

const Shop = defineActor({
  name: "shop",
  initialState: () => ({ placed: 0 }),
  events: { placed: (s, _e: typeof ORDER) => ({ placed: s.placed + 1 }) },
  handlers: {
    place(ctx, o: typeof ORDER) {
      ctx.emit("placed", o);
      return ctx.state.placed;
    },
    placeAndPublish(ctx, o: typeof ORDER) {
      ctx.emit("placed", o);
      ctx.publish(TOPIC, o, { durable: true });
      return ctx.state.placed;
    },
  },
  snapshotEvery: 1_000,
  idleAfter: 600_000,
});

/** The modes compared. */
export type Mode = "emit" | "emit + outbox" | "emit, then publish";
const MODES: readonly Mode[] = ["emit", "emit + outbox", "emit, then publish"];

/** One measured phase. */
export interface Phase {
  /** Turns per second, until the last ask's reply and (outbox) the outbox is empty again. */
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU µs per turn, this process (all threads). */
  cpuUs: number;
  /** CPU µs per turn, the nats-server (NaN in process). */
  serverCpuUs: number;
  /** ms from the last reply until every outbox message was forwarded. */
  drainMs: number;
}

/** Waits until the journal's outbox is empty (bounded). */
async function drained(journal: Journal): Promise<void> {
  const until = performance.now() + 60_000;
  for (;;) {
    let left = 0;
    for (let s = 0; s < journal.shards; s++) left += (await journal.readOutbox(s, 1)).length;
    if (left === 0) return;
    if (performance.now() > until) throw new Error("The outbox did not drain in 60 s");
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function phase(
  system: System,
  journal: Journal,
  mode: Mode,
  callers: number,
  n: number,
  serverPid: number | undefined,
  tag: string,
): Promise<Phase> {
  const refs = Array.from({ length: callers }, (_, i) => system.ref(Shop, `${tag}-${i}`));
  const lat: number[] = [];
  const one = async (i: number) => {
    const t = performance.now();
    if (mode === "emit") await refs[i]!.ask("place", ORDER);
    else if (mode === "emit + outbox") await refs[i]!.ask("placeAndPublish", ORDER);
    else {
      await refs[i]!.ask("place", ORDER);
      await system.publish(TOPIC, ORDER, { durable: true });
    }
    lat.push(performance.now() - t);
  };
  const c0 = cpuMicros("self");
  const s0 = serverPid ? cpuMicros(serverPid) : NaN;
  const t0 = performance.now();
  let next = 0;
  await Promise.all(refs.map(async (_, i) => {
    while (next++ < n) await one(i);
  }));
  const tAsks = performance.now();
  if (mode === "emit + outbox") await drained(journal);
  const t1 = performance.now();
  const cpu = cpuMicros("self") - c0;
  const server = serverPid ? cpuMicros(serverPid) - s0 : NaN;
  return {
    perSecond: (n / (t1 - t0)) * 1000,
    p50Ms: quantile(lat, 0.5),
    p99Ms: quantile(lat, 0.99),
    cpuUs: cpu / n,
    serverCpuUs: server / n,
    drainMs: t1 - tAsks,
  };
}

/** Results by mesh, callers and mode: the rounds. */
export type OutboxBench = Record<string, Record<Mode, Phase[]>>;

/** Runs the modes on `system`, both concurrency levels; checks delivery at the end. */
async function onSystem(
  system: System,
  journal: Journal,
  serverPid: number | undefined,
  options: { rounds: number; seq: number; par: number },
): Promise<Record<string, Record<Mode, Phase[]>>> {
  const out: Record<string, Record<Mode, Phase[]>> = {};
  let published = 0;
  // counts each durable message delivered (checked at the end)
  let delivered = 0;
  const levels = [[1, options.seq], [64, options.par]] as const;
  // warm-up: activations, statements, JIT
  for (const [callers] of levels) {
    for (const mode of MODES) {
      await phase(system, journal, mode, callers, 500, serverPid, `c${callers}`);
      if (mode !== "emit") published += 500;
    }
  }
  for (const [callers, n] of levels) {
    const by = out[`${callers} caller${callers > 1 ? "s" : ""}`] = {} as Record<Mode, Phase[]>;
    for (const mode of MODES) by[mode] = [];
    for (let r = 0; r < options.rounds; r++) {
      for (const mode of MODES) {
        by[mode].push(await phase(system, journal, mode, callers, n, serverPid, `c${callers}`));
        if (mode !== "emit") published += n;
      }
    }
  }
  const sub = system.subscribe(TOPIC, () => {
    delivered++;
  }, { durable: "check", from: "all", concurrency: 64 });
  const until = performance.now() + 120_000;
  while (delivered < published && performance.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 200)); // a duplicate would show by now
  sub.unsubscribe();
  if (delivered !== published) {
    throw new Error(`${published} messages published, ${delivered} delivered`);
  }
  return out;
}

/** The benchmark; see the module doc. */
export async function benchOutbox(
  options: { rounds?: number; seq?: number; par?: number; nats?: boolean } = {},
): Promise<OutboxBench> {
  const o = { rounds: options.rounds ?? 3, seq: options.seq ?? 1_500, par: options.par ?? 20_000 };
  const out: OutboxBench = {};
  const dir = await Deno.makeTempDir({ prefix: "troupe-bench-outbox-" });
  try {
    {
      const journal = libsqlJournal({ url: `file:${dir}/mem.db` });
      const system = await createSystem({
        actors: [Shop],
        journal,
        // room for every message of the run (100,000 by default), so delivery can be checked
        mesh: inProcessMesh({ durable: { maxMessages: 10_000_000 } }),
        logger: "error",
      });
      try {
        for (const [k, v] of Object.entries(await onSystem(system, journal, undefined, o))) {
          out[`in-process mesh, ${k}`] = v;
        }
      } finally {
        await system.close();
        await journal.close();
      }
    }
    if (options.nats ?? true) {
      await using nats = await startNatsCluster({ servers: 1, websocket: false });
      const journal = libsqlJournal({ url: `file:${dir}/nats.db` });
      const system = await createSystem({
        actors: [Shop],
        journal,
        mesh: natsMesh({ servers: nats.urls[0]!, prefix: "bench" }),
        logger: "error",
      });
      try {
        const pid = nats.servers[0]!.pid!;
        for (const [k, v] of Object.entries(await onSystem(system, journal, pid, o))) {
          out[`NATS, ${k}`] = v;
        }
      } finally {
        await system.close();
        await journal.close();
      }
    }
    return out;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const arg = (name: string, d: number) => {
    const a = Deno.args.find((x) => x.startsWith(`--${name}=`));
    return a ? Number(a.slice(name.length + 3)) : d;
  };
  const med = (xs: number[]) => quantile(xs, 0.5);
  const f = (x: number) =>
    Number.isNaN(x) ? "  -" : x >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(1);
  console.log(
    `outbox cost per turn — ${
      new Date().toISOString()
    } — ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, load ${
      loadAverage().join(" ")
    }`,
  );
  const r = await benchOutbox({
    rounds: arg("rounds", 3),
    seq: arg("seq", 1_500),
    par: arg("par", 20_000),
    nats: !Deno.args.includes("--skip-nats"),
  });
  for (const [where, modes] of Object.entries(r)) {
    console.log(`${where}:`);
    const base = med(modes.emit.map((p) => p.perSecond));
    const baseCpu = med(modes.emit.map((p) => p.cpuUs + (p.serverCpuUs || 0)));
    for (const mode of MODES) {
      const ps = modes[mode];
      const rates = ps.map((p) => p.perSecond);
      const m = med(rates);
      const cpu = med(ps.map((p) => p.cpuUs));
      const server = med(ps.map((p) => p.serverCpuUs));
      console.log(
        `   ${mode.padEnd(20)} ${f(m).padStart(7)} turns/s (${f(Math.min(...rates))}–${
          f(Math.max(...rates))
        })  p50 ${med(ps.map((p) => p.p50Ms)).toFixed(2)} ms  p99 ${
          med(ps.map((p) => p.p99Ms)).toFixed(2)
        } ms  cpu ${f(cpu)} µs/turn  server ${f(server)} µs/turn  drain ${
          f(med(ps.map((p) => p.drainMs)))
        } ms  ${(m / base).toFixed(2)}× rate, ${((cpu + (server || 0)) / baseCpu).toFixed(2)}× cpu`,
      );
    }
  }
  console.log(`load average after: ${loadAverage().join(" ")}`);
}
