/**
 * Journal benchmarks (the durable path), each next to a raw baseline measured in the same run
 * on the same kind of file (`synchronous=FULL`, WAL), steady state after a warm-up:
 *
 * - durable asks: 1000 actors × 20 sequential emitting asks through the system, against raw
 *   batches of 1000 rows (the journal's own `events` table), with the event loop's worst
 *   lateness meanwhile (a 1 ms interval), and the same asks on the in-memory journal (what the
 *   runtime's own work per ask allows on this machine, with no database);
 * - one hot actor, 64 concurrent callers, each ask emitting: durable turns/s against the raw
 *   one-row commit rate of the same kind of file;
 * - shards: the same durable asks on 1 and on 3 shard files, and journal appends alone;
 * - failover: 10,000 activations taking over from a dead owner, against one;
 * - journal appends by 1, 100 and 1000 concurrent actors (each awaiting its append), cold
 *   `activate()`, and the event loop while another process holds the write lock.
 *
 * Run: `deno run -A bench/journal.ts [durable|hot|shards|failover|appends|activation|stall]…`
 * (all when none is named). `BENCH_ROUNDS` (default 3) rounds of each, median and best kept.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { DatabaseSync } from "node:sqlite";
import { createClient } from "@libsql/client/node";
import { createSystem } from "../mod.ts";
import { Ledger } from "./actors.ts";
import { isOwned } from "../spi.ts";
import { libsqlJournal, type LibsqlJournalOptions } from "../adapters/libsql/mod.ts";
import { msgpack } from "../src/codec/mod.ts";
import { threadCpuMicros } from "./_proc.ts";

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const best = (xs: readonly number[]) => Math.max(...xs);

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "troupe-bench-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Creates the journal's schema in a fresh file (for the raw baselines). */
async function schema(url: string): Promise<void> {
  const j = libsqlJournal({ url });
  await j.read("x/x", 1, 1);
  await j.close();
}

/** Measures the worst lateness of a 1 ms interval while `fn` runs. */
async function lateness<T>(fn: () => Promise<T>): Promise<{ result: T; worstMs: number }> {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 1);
    last = now;
  }, 1);
  try {
    const result = await fn();
    return { result, worstMs: worst };
  } finally {
    clearInterval(timer);
  }
}

// ---- raw baselines -----------------------------------------------------------------------

/**
 * Raw batches of `rows` rows into the journal's `events` table with `@libsql/client` (one
 * multi-row INSERT per write transaction), `batches` of them; rows/s.
 */
async function rawClientBatches(url: string, rows: number, batches: number): Promise<number> {
  const client = createClient({ url, intMode: "number", concurrency: 1 });
  try {
    await client.execute("PRAGMA journal_mode = WAL");
    await client.execute("PRAGMA synchronous = FULL");
    const data = msgpack.encode(1);
    const sql = `INSERT INTO events (pos, actor, seq, prev, type, version, data, at) VALUES ${
      Array.from({ length: rows }, () => "(?,?,?,?,?,?,?,?)").join(",")
    }`;
    const base = Number(
      (await client.execute("SELECT coalesce(max(pos), 0) FROM events")).rows[0]![0],
    );
    const t0 = performance.now();
    for (let b = 0; b < batches; b++) {
      const args = [];
      const at = Date.now();
      for (let r = 0; r < rows; r++) {
        const pos = base + b * rows + r + 1;
        args.push(pos, r + 1, b + 1, pos - rows, "added", 1, data, at);
      }
      await client.batch([{ sql, args }], "write");
    }
    return (rows * batches) / ((performance.now() - t0) / 1000);
  } finally {
    client.close();
  }
}

/**
 * The same rows through the runtime's SQLite (`node:sqlite`, what the journal's worker uses)
 * on this thread, with the statement prepared once: the fastest raw baseline; rows/s.
 */
function rawPreparedBatches(path: string, rows: number, batches: number): number {
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA synchronous = FULL");
    const sql = `INSERT INTO events (pos, actor, seq, prev, type, version, data, at) VALUES ${
      Array.from({ length: rows }, () => "(?,?,?,?,?,?,?,?)").join(",")
    }`;
    const stmt = db.prepare(sql);
    const data = msgpack.encode(1);
    const top = db.prepare("SELECT coalesce(max(pos), 0) AS top FROM events").get() as {
      top: number;
    };
    const base = Number(top.top);
    const t0 = performance.now();
    for (let b = 0; b < batches; b++) {
      const args = [];
      const at = Date.now();
      for (let r = 0; r < rows; r++) {
        const pos = base + b * rows + r + 1;
        args.push(pos, r + 1, b + 1, pos - rows, "added", 1, data, at);
      }
      db.exec("BEGIN IMMEDIATE");
      stmt.run(...args);
      db.exec("COMMIT");
    }
    return (rows * batches) / ((performance.now() - t0) / 1000);
  } finally {
    db.close();
  }
}

/** Raw one-row commits (one INSERT per write transaction) for `seconds`; commits/s. */
async function rawOneRowCommits(url: string, seconds: number): Promise<number> {
  const client = createClient({ url, intMode: "number", concurrency: 1 });
  try {
    await client.execute("PRAGMA journal_mode = WAL");
    await client.execute("PRAGMA synchronous = FULL");
    const data = msgpack.encode(1);
    let n = 0;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    while (performance.now() < end) {
      n++;
      await client.execute({
        sql: `INSERT INTO events (pos, actor, seq, prev, type, version, data, at)
              VALUES ((SELECT coalesce(max(pos), 0) + 1 FROM events), 1, ?, NULL, 'added', 1, ?, ?)`,
        args: [n, data, Date.now()],
      });
    }
    return n / ((performance.now() - t0) / 1000);
  } finally {
    client.close();
  }
}

// ---- durable asks ------------------------------------------------------------------------

/** Result of {@link benchDurableAsks}. */
export interface DurableAsksResult {
  /** Durable asks/s of each round. */
  readonly perSecond: readonly number[];
  /** Raw `@libsql/client` batches of 1000 rows, rows/s of each round. */
  readonly rawClient: readonly number[];
  /** Raw prepared batches of 1000 rows (`node:sqlite` on this thread), rows/s. */
  readonly rawPrepared: readonly number[];
  /** Worst lateness of a 1 ms interval during each measured round, ms. */
  readonly worstLatenessMs: readonly number[];
  /**
   * CPU per ask in each measured round, µs: the main thread, V8's helper threads (GC,
   * compilation), the journal's database thread, and all threads of the process.
   */
  readonly cpuPerAsk: readonly { main: number; v8: number; worker: number; total: number }[];
}

/**
 * `actors` actors (activated, then warmed up with 2 asks each) each send `asks` sequential
 * emitting asks, all actors at once, on a libSQL journal (one file, or `shards` files); next
 * to raw batches of `actors` rows, `asks` of them, on a file of the same kind.
 *
 * @example
 * ```ts
 * import { benchDurableAsks } from "./journal.ts";
 * const r = await benchDurableAsks({ actors: 100, asks: 5, rounds: 1 });
 * console.log(r.perSecond[0]);
 * ```
 */
export async function benchDurableAsks(
  options: {
    actors?: number;
    asks?: number;
    rounds?: number;
    shards?: number;
    /** The in-memory journal instead of libSQL files (what the asks cost without a database). */
    memory?: boolean;
  } = {},
): Promise<DurableAsksResult> {
  const actors = options.actors ?? 1000;
  const asks = options.asks ?? 20;
  const rounds = options.rounds ?? 3;
  const shards = options.shards ?? 1;
  const perSecond: number[] = [];
  const rawClient: number[] = [];
  const rawPrepared: number[] = [];
  const worstLatenessMs: number[] = [];
  const cpuPerAsk: { main: number; v8: number; worker: number; total: number }[] = [];
  for (let round = 0; round < rounds; round++) {
    await withDir(async (dir) => {
      const urls = Array.from({ length: shards }, (_, i) => `file:${dir}/ours${i}.db`);
      const journal = options.memory
        ? undefined
        : libsqlJournal(shards === 1 ? { url: urls[0]! } : { shards: urls });
      const system = await createSystem({
        actors: [Ledger],
        ...(journal ? { journal } : {}),
        logger: "warn",
      });
      try {
        const refs = Array.from({ length: actors }, (_, i) => system.ref(Ledger, `l${i}`));
        await Promise.all(refs.map((r) => r.ask("total")));
        const pass = async () => {
          const t0 = performance.now();
          // The callers start 50 per turn of the event loop (as requests arrive from a network),
          // not all in one turn: the lateness measured is the steady state's.
          const callers: Promise<void>[] = [];
          for (let i = 0; i < refs.length; i += 50) {
            for (const r of refs.slice(i, i + 50)) {
              callers.push((async () => {
                for (let k = 0; k < asks; k++) await r.ask("add", 1);
              })());
            }
            await new Promise((resolve) => setImmediate(resolve));
          }
          await Promise.all(callers);
          return (performance.now() - t0) / 1000;
        };
        await pass(); // warm-up: the same asks, not measured
        const cpu0 = threadCpuMicros();
        const { result: seconds, worstMs } = await lateness(pass);
        const cpu1 = threadCpuMicros();
        perSecond.push((actors * asks) / seconds);
        worstLatenessMs.push(worstMs);
        const per = (k: keyof typeof cpu0) => (cpu1[k] - cpu0[k]) / (actors * asks);
        cpuPerAsk.push({
          main: per("main"),
          v8: per("v8"),
          worker: per("workers"),
          total: per("main") + per("v8") + per("workers") + per("other"),
        });
      } finally {
        await system.close();
        await journal?.close();
      }
      const url = `file:${dir}/raw.db`;
      await schema(url);
      rawClient.push(await rawClientBatches(url, actors, asks));
      rawPrepared.push(rawPreparedBatches(`${dir}/raw.db`, actors, asks));
    });
  }
  return { perSecond, rawClient, rawPrepared, worstLatenessMs, cpuPerAsk };
}

// ---- one hot actor -----------------------------------------------------------------------

/** Result of {@link benchHotActor}. */
export interface HotActorResult {
  /** Durable turns/s of each round. */
  readonly turnsPerSecond: readonly number[];
  /** Raw one-row commits/s of each round. */
  readonly rawCommitsPerSecond: readonly number[];
  /** Events in the log after each round (equals the acknowledged turns). */
  readonly logged: readonly number[];
  /** Acknowledged turns in each round. */
  readonly acknowledged: readonly number[];
}

/**
 * One actor, `callers` concurrent callers each sending emitting asks for `seconds`: durable
 * turns/s (every reply after its event is durable), against raw one-row commits on a file of
 * the same kind.
 *
 * @example
 * ```ts
 * import { benchHotActor } from "./journal.ts";
 * const r = await benchHotActor({ seconds: 1, rounds: 1 });
 * console.log(r.turnsPerSecond[0]);
 * ```
 */
export async function benchHotActor(
  options: { callers?: number; seconds?: number; rounds?: number } = {},
): Promise<HotActorResult> {
  const callers = options.callers ?? 64;
  const seconds = options.seconds ?? 2;
  const rounds = options.rounds ?? 3;
  const turnsPerSecond: number[] = [];
  const rawCommitsPerSecond: number[] = [];
  const logged: number[] = [];
  const acknowledged: number[] = [];
  for (let round = 0; round < rounds; round++) {
    await withDir(async (dir) => {
      const journal = libsqlJournal({ url: `file:${dir}/hot.db` });
      const system = await createSystem({ actors: [Ledger], journal, logger: "warn" });
      try {
        const hot = system.ref(Ledger, "hot");
        const loop = async (ms: number) => {
          let n = 0;
          const end = performance.now() + ms;
          await Promise.all(Array.from({ length: callers }, async () => {
            while (performance.now() < end) {
              await hot.ask("add", 1);
              n++;
            }
          }));
          return n;
        };
        const warm = await loop(500);
        const t0 = performance.now();
        const n = await loop(seconds * 1000);
        turnsPerSecond.push(n / ((performance.now() - t0) / 1000));
        acknowledged.push(warm + n);
        let count = 0;
        for await (const _ of system.history(Ledger, "hot")) count++;
        logged.push(count);
      } finally {
        await system.close();
        await journal.close();
      }
      const url = `file:${dir}/raw.db`;
      await schema(url);
      rawCommitsPerSecond.push(await rawOneRowCommits(url, seconds));
    });
  }
  return { turnsPerSecond, rawCommitsPerSecond, logged, acknowledged };
}

// ---- journal appends alone ---------------------------------------------------------------

/**
 * Journal appends/s with `actors` concurrently appending actors (each awaiting its append,
 * one event of `payloadBytes`), for `seconds`, on one file or `shards` files.
 *
 * @example
 * ```ts
 * import { benchAppends } from "./journal.ts";
 * console.log(await benchAppends({ actors: 100, seconds: 1 }));
 * ```
 */
export async function benchAppends(
  options: {
    actors?: number;
    seconds?: number;
    shards?: number;
    payloadBytes?: number;
    journal?: Omit<LibsqlJournalOptions, "url" | "shards">;
  } = {},
): Promise<number> {
  const actors = options.actors ?? 1000;
  const seconds = options.seconds ?? 2;
  const shards = options.shards ?? 1;
  const data = new Uint8Array(options.payloadBytes ?? 100).fill(7);
  return await withDir(async (dir) => {
    const urls = Array.from({ length: shards }, (_, i) => `file:${dir}/a${i}.db`);
    const journal = libsqlJournal({
      ...(shards === 1 ? { url: urls[0]! } : { shards: urls }),
      ...options.journal,
    });
    try {
      const keys = Array.from({ length: actors }, (_, i) => `bench/a${i}`);
      const epochs = await Promise.all(keys.map(async (k) => (await journal.activate(k)).epoch));
      const run = async (ms: number, from: number[]) => {
        let count = 0;
        const end = performance.now() + ms;
        await Promise.all(keys.map(async (actor, i) => {
          while (performance.now() < end) {
            await journal.append({
              actor,
              epoch: epochs[i]!,
              expectedSeq: from[i]!++,
              events: [{ type: "bench", version: 1, data, at: Date.now() }],
            });
            count++;
          }
        }));
        return count;
      };
      const seqs = keys.map(() => 0);
      await run(300, seqs); // warm-up
      const t0 = performance.now();
      const n = await run(seconds * 1000, seqs);
      return n / ((performance.now() - t0) / 1000);
    } finally {
      await journal.close();
    }
  });
}

// ---- what the disk and cores give to several writers --------------------------------------

const RAW_WRITER = `
import { DatabaseSync } from "node:sqlite";
self.onmessage = (e) => {
  const { path, ms } = e.data;
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  db.exec("CREATE TABLE IF NOT EXISTS events (pos INTEGER PRIMARY KEY, actor INTEGER, seq INTEGER, data BLOB)");
  const stmt = db.prepare("INSERT INTO events (actor, seq, data) VALUES " + Array(1000).fill("(?,?,?)").join(","));
  const data = new Uint8Array(30);
  let rows = 0;
  const end = performance.now() + ms;
  const t0 = performance.now();
  while (performance.now() < end) {
    const args = [];
    for (let i = 0; i < 1000; i++) args.push(i, rows, data);
    db.exec("BEGIN IMMEDIATE");
    stmt.run(...args);
    db.exec("COMMIT");
    rows += 1000;
  }
  db.close();
  self.postMessage(rows / ((performance.now() - t0) / 1000));
};
`;

/**
 * Raw writers on this machine: `threads` worker threads, each committing 1000-row batches
 * (`synchronous=FULL`) to a file of its own for `seconds`; total rows/s. What shards can get at
 * most from the disk and the cores, whatever the journal does.
 *
 * @example
 * ```ts
 * import { rawWriters } from "./journal.ts";
 * console.log((await rawWriters(3, 1)) / (await rawWriters(1, 1)));
 * ```
 */
export async function rawWriters(threads: number, seconds = 2): Promise<number> {
  return await withDir(async (dir) => {
    const url = `data:application/javascript,${encodeURIComponent(RAW_WRITER)}`;
    const rates = await Promise.all(
      Array.from({ length: threads }, (_, i) =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(url, { type: "module" });
          w.onmessage = (e) => {
            w.terminate();
            resolve(e.data as number);
          };
          w.onerror = (e) => {
            w.terminate();
            reject(e);
          };
          w.postMessage({ path: `${dir}/w${i}.db`, ms: seconds * 1000 });
        })),
    );
    return rates.reduce((a, b) => a + b, 0);
  });
}

// ---- failover ----------------------------------------------------------------------------

/** Result of {@link benchFailover}. */
export interface FailoverResult {
  /** Time until all `actors` were activated by the taking-over node, ms. */
  readonly allMs: number;
  /** Time until one actor was, ms (median of a few). */
  readonly oneMs: number;
  /** Actors taken over. */
  readonly actors: number;
}

/**
 * The journal side of a failover: `actors` actors owned by node `dead` (each with a snapshot
 * and 20 events after it) are claimed at once by node `alive` with `takeOver: "dead"`, on a
 * fresh journal (cold cache); time until every claim returned its recovered state, against
 * the same for one actor.
 *
 * @example
 * ```ts
 * import { benchFailover } from "./journal.ts";
 * console.log(await benchFailover({ actors: 1000 }));
 * ```
 */
export async function benchFailover(options: { actors?: number } = {}): Promise<FailoverResult> {
  const actors = options.actors ?? 10_000;
  return await withDir(async (dir) => {
    const url = `file:${dir}/f.db`;
    const keys = Array.from({ length: actors }, (_, i) => `ledger/f${i}`);
    const setup = libsqlJournal({ url, synchronous: "normal" });
    try {
      const data = msgpack.encode(1);
      const state = msgpack.encode({ total: 100 });
      await Promise.all(keys.map(async (actor) => {
        const rec = await setup.activate(actor, { node: "dead" });
        if (isOwned(rec)) throw new Error("setup claim refused");
        await setup.append({
          actor,
          epoch: rec.epoch,
          expectedSeq: 0,
          events: Array.from({ length: 120 }, () => ({ type: "added", version: 1, data, at: 1 })),
          snapshot: { seq: 100, version: 1, state },
        });
      }));
    } finally {
      await setup.close();
    }
    const journal = libsqlJournal({ url });
    try {
      await journal.read("x/x", 1, 1); // opened
      const ones: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const rec = await journal.activate(keys[i]!, { node: "alive", takeOver: "dead" });
        if (isOwned(rec) || rec.events.length !== 20) throw new Error("bad takeover");
        ones.push(performance.now() - t0);
      }
      const rest = keys.slice(5);
      const t0 = performance.now();
      const recs = await Promise.all(
        rest.map((k) => journal.activate(k, { node: "alive", takeOver: "dead" })),
      );
      const allMs = performance.now() - t0;
      if (recs.some((r) => isOwned(r) || r.events.length !== 20)) throw new Error("bad takeover");
      return { allMs, oneMs: median(ones), actors: rest.length };
    } finally {
      await journal.close();
    }
  });
}

// ---- cold activation, lock stall (as before) ---------------------------------------------

/** Result of {@link benchActivation}. */
export interface ActivationResult {
  /** Activations measured. */
  readonly samples: number;
  /** Median `activate()` time, ms. */
  readonly p50Ms: number;
  /** 99th percentile `activate()` time, ms. */
  readonly p99Ms: number;
}

/**
 * Measures cold `activate()` of actors that each have a snapshot and 100 later events
 * (100-byte payloads), journal part only, one at a time: p50/p99 over `samples` actors.
 *
 * @example
 * ```ts
 * import { benchActivation } from "./journal.ts";
 * const { p50Ms, p99Ms } = await benchActivation({ samples: 100 });
 * ```
 */
export async function benchActivation(
  options: { samples?: number; synchronous?: "full" | "normal" } = {},
): Promise<ActivationResult> {
  const samples = options.samples ?? 500;
  const data = new Uint8Array(100).fill(3);
  const state = new Uint8Array(1000).fill(4);
  return await withDir(async (dir) => {
    const url = `file:${dir}/a.db`;
    const setup = libsqlJournal({ url, synchronous: "normal" });
    try {
      await Promise.all(Array.from({ length: samples }, async (_, i) => {
        const actor = `bench/cold${i}`;
        const { epoch } = await setup.activate(actor);
        const events = Array.from({ length: 150 }, () => ({
          type: "bench",
          version: 1,
          data,
          at: Date.now(),
        }));
        await setup.append({
          actor,
          epoch,
          expectedSeq: 0,
          events,
          snapshot: { seq: 50, version: 1, state },
        });
      }));
    } finally {
      await setup.close();
    }
    const journal = libsqlJournal({ url, synchronous: options.synchronous ?? "full" });
    try {
      await journal.read("bench/none", 1, 1);
      const times: number[] = [];
      for (let i = 0; i < samples; i++) {
        const t = performance.now();
        const rec = await journal.activate(`bench/cold${i}`);
        times.push(performance.now() - t);
        if (isOwned(rec) || rec.events.length !== 100 || !rec.snapshot) {
          throw new Error("bad activation");
        }
      }
      times.sort((a, b) => a - b);
      const q = (p: number) =>
        Math.round(times[Math.min(times.length - 1, Math.floor(p * times.length))]! * 1000) / 1000;
      return { samples, p50Ms: q(0.5), p99Ms: q(0.99) };
    } finally {
      await journal.close();
    }
  });
}

/** Result of {@link benchLockStall}. */
export interface LockStallResult {
  /** How long the append waited for the lock, ms. */
  readonly waitedMs: number;
  /** The longest gap between two ticks of a 10 ms interval meanwhile, ms. */
  readonly maxStallMs: number;
  /** How the append ended: `"ok"` or the error's code. */
  readonly outcome: string;
}

const LOCKER = `
import { createClient } from "@libsql/client/node";
const c = createClient({ url: Deno.args[0] });
const tx = await c.transaction("write");
await tx.execute("INSERT INTO troupe_meta (key, value) VALUES ('locker', 1)");
console.log("locked");
setInterval(() => {}, 60_000);
`;

/**
 * One append while another process holds the write lock and is paused (SIGSTOP): it waits
 * for `busyTimeoutMs` and fails with `unavailable`; a 10 ms interval measures how long the
 * event loop stalled meanwhile.
 *
 * @example
 * ```ts
 * import { benchLockStall } from "./journal.ts";
 * const { maxStallMs } = await benchLockStall({ busyTimeoutMs: 1000 });
 * ```
 */
export async function benchLockStall(
  options: { busyTimeoutMs?: number } = {},
): Promise<LockStallResult> {
  return await withDir(async (dir) => {
    const url = `file:${dir}/l.db`;
    const journal = libsqlJournal({
      url,
      ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
    });
    const script = `${dir}/locker.js`;
    await Deno.writeTextFile(script, LOCKER);
    let child: Deno.ChildProcess | undefined;
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      const { epoch } = await journal.activate("bench/locked");
      child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--config",
          new URL("../deno.json", import.meta.url).pathname,
          script,
          url,
        ],
        stdin: "null",
        stdout: "piped",
      }).spawn();
      reader = child.stdout.getReader();
      let wait: ReturnType<typeof setTimeout> | undefined;
      const first = await Promise.race([
        reader.read(),
        new Promise<undefined>((resolve) => wait = setTimeout(() => resolve(undefined), 30_000)),
      ]).finally(() => clearTimeout(wait));
      if (!first || first.done) throw new Error("the lock holder did not take the lock");
      child.kill("SIGSTOP");
      let last = performance.now();
      let maxStallMs = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        maxStallMs = Math.max(maxStallMs, now - last);
        last = now;
      }, 10);
      const start = performance.now();
      const outcome = await journal.append({
        actor: "bench/locked",
        epoch,
        expectedSeq: 0,
        events: [{ type: "bench", version: 1, data: new Uint8Array(100), at: Date.now() }],
      }).then(() => "ok", (err) => String(err?.code ?? err));
      const waitedMs = performance.now() - start;
      clearInterval(timer);
      maxStallMs = Math.max(maxStallMs, performance.now() - last);
      return { waitedMs: Math.round(waitedMs), maxStallMs: Math.round(maxStallMs), outcome };
    } finally {
      try {
        child?.kill("SIGKILL");
      } catch {
        // already gone
      }
      await reader?.cancel().catch(() => {});
      await child?.status;
      await journal.close();
    }
  });
}

/** Kept for `bench/main.ts`: appends/s with 1, 100 and 1000 actors (journal alone). */
export async function benchJournal(
  options: { actors?: readonly number[]; seconds?: number } = {},
): Promise<{ actors: number; journalPerSec: number }[]> {
  const out = [];
  for (const actors of options.actors ?? [1, 100, 1000]) {
    out.push({
      actors,
      journalPerSec: Math.round(await benchAppends({ actors, seconds: options.seconds ?? 2 })),
    });
  }
  return out;
}

if (import.meta.main) {
  const rounds = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
  const which = new Set(
    Deno.args.length > 0
      ? Deno.args
      : ["durable", "hot", "shards", "failover", "appends", "activation", "stall"],
  );
  const k = (n: number) => `${Math.round(n).toLocaleString("en")}`;
  const r2 = (n: number) => (Math.round(n * 100) / 100).toFixed(2);
  console.log(
    `Deno ${Deno.version.deno} · ${navigator.hardwareConcurrency} cores · ${
      new Date().toISOString()
    }`,
  );
  if (which.has("durable")) {
    const r = await benchDurableAsks({ rounds });
    const raw = best(r.rawClient);
    console.log(
      `durable asks, 1000 actors × 20: median ${k(median(r.perSecond))}/s, best ${
        k(best(r.perSecond))
      }/s ` +
        `(rounds ${r.perSecond.map(k).join(", ")}); raw @libsql/client 1000-row batches best ${
          k(raw)
        } rows/s ` +
        `(rounds ${r.rawClient.map(k).join(", ")}) → ratio median ${
          r2(median(r.perSecond) / raw)
        }, best ${r2(best(r.perSecond) / raw)}; ` +
        `raw prepared best ${k(best(r.rawPrepared))} rows/s; worst event-loop lateness ${
          r.worstLatenessMs.map((x) => x.toFixed(1)).join(", ")
        } ms`,
    );
    const cpu = (pick: (c: DurableAsksResult["cpuPerAsk"][number]) => number) =>
      r.cpuPerAsk.map((c) => pick(c).toFixed(1)).join(", ");
    console.log(
      `  CPU per durable ask, µs (rounds): main thread ${cpu((c) => c.main)}; V8 helper threads ${
        cpu((c) => c.v8)
      }; database thread ${cpu((c) => c.worker)}; all threads ${cpu((c) => c.total)}` +
        ` (${navigator.hardwareConcurrency} cores: the main thread alone would allow ${
          r.cpuPerAsk.map((c) => k(1e6 / c.main)).join(", ")
        } asks/s)`,
    );
    // The same asks with no database at all: what the runtime's own work per ask allows here.
    const m = await benchDurableAsks({ rounds, memory: true });
    const mraw = best(m.rawClient);
    console.log(
      `  the same asks on the in-memory journal (no database): median ${
        k(median(m.perSecond))
      }/s (rounds ${m.perSecond.map(k).join(", ")}) → ratio median ${
        r2(median(m.perSecond) / mraw)
      } of raw 1000-row batches (best ${k(mraw)} rows/s in that run); CPU all threads ${
        m.cpuPerAsk.map((c) => c.total.toFixed(1)).join(", ")
      } µs per ask`,
    );
  }
  if (which.has("hot")) {
    const r = await benchHotActor({ rounds });
    const raw = best(r.rawCommitsPerSecond);
    console.log(
      `one hot actor, 64 callers: median ${k(median(r.turnsPerSecond))} durable turns/s (rounds ${
        r.turnsPerSecond.map(k).join(", ")
      }); raw one-row commits best ${k(raw)}/s (rounds ${
        r.rawCommitsPerSecond.map(k).join(", ")
      }) → ${r2(median(r.turnsPerSecond) / raw)}×; logged ${r.logged.join(", ")} events for ${
        r.acknowledged.join(", ")
      } acknowledged`,
    );
  }
  if (which.has("shards")) {
    const one = await benchDurableAsks({ rounds, shards: 1 });
    const three = await benchDurableAsks({ rounds, shards: 3 });
    console.log(
      `durable asks on 1 vs 3 shards: ${k(median(one.perSecond))}/s vs ${
        k(median(three.perSecond))
      }/s → ${r2(median(three.perSecond) / median(one.perSecond))}×`,
    );
    const a1: number[] = [];
    const a3: number[] = [];
    for (let i = 0; i < rounds; i++) {
      a1.push(await benchAppends({ actors: 3000, shards: 1 }));
      a3.push(await benchAppends({ actors: 3000, shards: 3 }));
    }
    console.log(
      `journal appends, 3000 actors, 1 vs 3 shards: ${k(median(a1))}/s vs ${k(median(a3))}/s → ${
        r2(median(a3) / median(a1))
      }×`,
    );
    const w1: number[] = [];
    const w3: number[] = [];
    for (let i = 0; i < rounds; i++) {
      w1.push(await rawWriters(1));
      w3.push(await rawWriters(3));
    }
    console.log(
      `raw writers (node:sqlite threads, 1000-row FULL commits, a file each), 1 vs 3: ${
        k(median(w1))
      } vs ${k(median(w3))} rows/s → ${r2(median(w3) / median(w1))}×`,
    );
  }
  if (which.has("failover")) {
    const r = await benchFailover();
    console.log(
      `takeover of ${k(r.actors)} actors (snapshot + 20 events each): all in ${
        k(r.allMs)
      } ms; one alone ${r.oneMs.toFixed(2)} ms`,
    );
  }
  if (which.has("appends")) {
    for (const actors of [1, 100, 1000]) {
      console.log(
        `journal appends, ${actors} actors each awaiting its append: ${
          k(await benchAppends({ actors }))
        }/s`,
      );
    }
  }
  if (which.has("activation")) {
    const act = await benchActivation();
    console.log(
      `cold activate() (snapshot + 100 events): p50 ${act.p50Ms} ms, p99 ${act.p99Ms} ms over ${act.samples}`,
    );
  }
  if (which.has("stall")) {
    const stall = await benchLockStall();
    console.log(
      `append while a paused process holds the write lock: ${stall.outcome} after ${stall.waitedMs} ms; event loop stalled at most ${stall.maxStallMs} ms`,
    );
  }
}
