/**
 * Journal benchmark: group-committed appends of the libSQL journal against raw batched
 * inserts of the same rows, and cold activation time.
 *
 * Run: `deno run -A bench/journal.ts` (prints a table).
 *
 * @module
 */

import { createClient } from "@libsql/client/node";
import { libsqlJournal, type LibsqlJournalOptions } from "../adapters/libsql/mod.ts";

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
        if (rec.events.length !== 100 || !rec.snapshot) throw new Error("bad activation");
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
}
