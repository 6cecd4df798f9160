/**
 * Journal benchmark: group-committed appends of the libSQL journal against raw batched
 * inserts of the same rows, cold activation time, and how long the event loop stalls while
 * another process holds the database's write lock.
 *
 * Run: `deno run -A bench/journal.ts` (prints a table).
 *
 * @module
 */

import { createClient } from "@libsql/client/node";
import { libsqlJournal, type LibsqlJournalOptions } from "../adapters/libsql/mod.ts";
import { isOwned } from "../src/journal/types.ts";

/** Options of {@link benchJournal}. */
export interface BenchJournalOptions {
  /** Concurrently appending actors, one measurement each. @default {[1, 100, 1000]} */
  readonly actors?: readonly number[];
  /** Seconds per measurement. @default {2} */
  readonly seconds?: number;
  /** Rows per raw transaction. @default {1000} */
  readonly rawRows?: number;
  /** Payload bytes per event. @default {100} */
  readonly payloadBytes?: number;
  /** SQLite `synchronous` of both sides. @default {"full"} */
  readonly synchronous?: "full" | "normal";
  /** Max appends per group commit. @default {2000} */
  readonly maxBatch?: number;
}

/** One line of the append table. */
export interface Result {
  /** Concurrently appending actors. */
  readonly actors: number;
  /** Journal appends per second (one event each, each actor awaiting each append). */
  readonly journalPerSec: number;
  /** Raw inserted rows per second (multi-row INSERTs, `rawRows` per transaction). */
  readonly rawPerSec: number;
  /** journalPerSec / rawPerSec. */
  readonly ratio: number;
}

/** Result of {@link benchActivation}. */
export interface ActivationResult {
  /** Activations measured. */
  readonly samples: number;
  /** Median `activate()` time, ms. */
  readonly p50Ms: number;
  /** 99th percentile `activate()` time, ms. */
  readonly p99Ms: number;
}

function payload(bytes: number): Uint8Array {
  const p = new Uint8Array(bytes);
  crypto.getRandomValues(p);
  return p;
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "troupe-bench-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function measureJournal(
  actors: number,
  seconds: number,
  data: Uint8Array,
  options: Omit<LibsqlJournalOptions, "url">,
): Promise<{ perSec: number }> {
  return await withDir(async (dir) => {
    const journal = libsqlJournal({ url: `file:${dir}/j.db`, ...options });
    try {
      const keys = Array.from({ length: actors }, (_, i) => `bench/a${i}`);
      const epochs: number[] = [];
      for (const k of keys) epochs.push((await journal.activate(k)).epoch);
      let count = 0;
      const start = performance.now();
      const end = start + seconds * 1000;
      await Promise.all(keys.map(async (actor, i) => {
        for (let seq = 0; performance.now() < end; seq++) {
          await journal.append({
            actor,
            epoch: epochs[i]!,
            expectedSeq: seq,
            events: [{ type: "bench", version: 1, data, at: Date.now() }],
          });
          count++;
        }
      }));
      const elapsed = (performance.now() - start) / 1000;
      return { perSec: count / elapsed };
    } finally {
      await journal.close();
    }
  });
}

async function measureRaw(
  actors: number,
  seconds: number,
  rows: number,
  data: Uint8Array,
  synchronous: "full" | "normal",
): Promise<number> {
  return await withDir(async (dir) => {
    const url = `file:${dir}/r.db`;
    await libsqlJournal({ url }).close(); // same schema
    const j = libsqlJournal({ url });
    await j.read("x", 1, 1); // opens and migrates
    await j.close();
    const client = createClient({ url, intMode: "number", concurrency: 1 });
    try {
      await client.execute("PRAGMA journal_mode = WAL");
      await client.execute(`PRAGMA synchronous = ${synchronous}`);
      const sql = `INSERT INTO events (actor, seq, type, version, data, at) VALUES ${
        Array.from({ length: rows }, () => "(?,?,?,?,?,?)").join(",")
      }`;
      let i = 0;
      const start = performance.now();
      const end = start + seconds * 1000;
      while (performance.now() < end) {
        const args = [];
        const at = Date.now();
        for (let r = 0; r < rows; r++, i++) {
          args.push(`bench/a${i % actors}`, Math.floor(i / actors) + 1, "bench", 1, data, at);
        }
        await client.batch([{ sql, args }], "write");
      }
      return i / ((performance.now() - start) / 1000);
    } finally {
      client.close();
    }
  });
}

/**
 * Measures journal appends/s with 1, 100 and 1000 concurrently appending actors on a libSQL
 * file, next to raw batched inserts of the same rows, in a temp dir each.
 *
 * @example
 * ```ts
 * import { benchJournal } from "./journal.ts";
 * const results = await benchJournal({ actors: [100], seconds: 1 });
 * console.table(results);
 * ```
 */
export async function benchJournal(options: BenchJournalOptions = {}): Promise<Result[]> {
  const seconds = options.seconds ?? 2;
  const rawRows = options.rawRows ?? 1000;
  const synchronous = options.synchronous ?? "full";
  const data = payload(options.payloadBytes ?? 100);
  const results: Result[] = [];
  for (const actors of options.actors ?? [1, 100, 1000]) {
    const j = await measureJournal(actors, seconds, data, {
      synchronous,
      ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
    });
    const raw = await measureRaw(actors, seconds, rawRows, data, synchronous);
    results.push({
      actors,
      journalPerSec: Math.round(j.perSec),
      rawPerSec: Math.round(raw),
      ratio: Math.round((j.perSec / raw) * 100) / 100,
    });
  }
  return results;
}

/**
 * Measures cold `activate()` of actors that each have a snapshot and 100 later events
 * (100-byte payloads), journal part only: p50/p99 over `samples` actors.
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
  const data = payload(100);
  const state = payload(1000);
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
    // A fresh journal (new connection, cold statement cache).
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
 * event loop stalled meanwhile (it must stay far below a lease TTL).
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
        events: [{ type: "bench", version: 1, data: payload(100), at: Date.now() }],
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

if (import.meta.main) {
  const seconds = Number(Deno.env.get("BENCH_SECONDS") ?? 2);
  const synchronous = (Deno.env.get("BENCH_SYNC") ?? "full") as "full" | "normal";
  const results = await benchJournal({ seconds, synchronous });
  console.log(
    `libSQL journal appends (synchronous=${synchronous}, 100-byte events, ${seconds} s each)`,
  );
  console.table(results.map((r) => ({
    actors: r.actors,
    "journal appends/s": r.journalPerSec,
    "raw rows/s (1000/txn)": r.rawPerSec,
    "journal/raw": r.ratio,
  })));
  const act = await benchActivation({ synchronous });
  console.log(
    `cold activate() (snapshot + 100 events): p50 ${act.p50Ms} ms, p99 ${act.p99Ms} ms over ${act.samples}`,
  );
  const stall = await benchLockStall();
  console.log(
    `append while a paused process holds the write lock: ${stall.outcome} after ${stall.waitedMs} ms; event loop stalled at most ${stall.maxStallMs} ms`,
  );
}
