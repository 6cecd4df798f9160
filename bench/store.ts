/**
 * Record store benchmark: `system.store()` on a libSQL file against raw `@libsql/client`
 * statements doing the same work on the same kind of file, in the same run.
 *
 * Both sides: a local file in WAL mode with `synchronous=FULL` (the journal's default), one
 * connection, ~100-byte values. Raw and store rounds alternate (three each, median kept) so
 * background load hits both alike.
 *
 * Run: `deno run -A bench/store.ts` (prints a table).
 *
 * @module
 */

import { createClient } from "@libsql/client/node";
import { createSystem } from "../mod.ts";
import { msgpack } from "../src/codec/mod.ts";

/** One line of the table. */
export interface StoreBenchResult {
  /** What was measured. */
  readonly what: string;
  /** Store operations per second. */
  readonly storePerSec: number;
  /** Raw statements per second. */
  readonly rawPerSec: number;
  /** What the raw side ran. */
  readonly raw: string;
  /** storePerSec / rawPerSec. */
  readonly ratio: number;
}

/** Options of {@link benchStore}. */
export interface BenchStoreOptions {
  /** Seconds per round. @default {1} */
  readonly seconds?: number;
  /** Rounds per side (median kept). @default {3} */
  readonly rounds?: number;
  /** Keys written and read. @default {1000} */
  readonly keys?: number;
}

const VALUE = { name: "cart", items: ["apple", "pear", "plum"], total: 1234, note: "x".repeat(40) };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs `op(i)` one after the other for `seconds`; ops per second. */
async function serial(seconds: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let k = 0; k < 50; k++) await op(n++);
  }
  return n / ((performance.now() - start) / 1000);
}

/** Runs `op(i)` from `workers` concurrent loops for `seconds`; ops per second. */
async function concurrent(
  seconds: number,
  workers: number,
  op: (i: number) => Promise<unknown>,
): Promise<number> {
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(Array.from({ length: workers }, async () => {
    while (performance.now() < end) await op(n++);
  }));
  return n / ((performance.now() - start) / 1000);
}

/**
 * Measures store get/s, set/s (one at a time and 64 concurrent), and compare-and-set/s
 * against the raw statements that do the same on a plain table.
 *
 * @example
 * ```ts
 * import { benchStore } from "./store.ts";
 * for (const r of await benchStore({ seconds: 0.2, rounds: 1 })) console.log(r.what, r.ratio);
 * ```
 */
export async function benchStore(options: BenchStoreOptions = {}): Promise<StoreBenchResult[]> {
  const seconds = options.seconds ?? 1;
  const rounds = options.rounds ?? 3;
  const keyCount = options.keys ?? 1000;
  const dir = await Deno.makeTempDir({ prefix: "troupe-bench-store-" });
  const system = await createSystem({ journal: `file:${dir}/store.db`, logger: "error" });
  const raw = createClient({ url: `file:${dir}/raw.db`, intMode: "number" });
  try {
    await raw.execute("PRAGMA journal_mode = WAL");
    await raw.execute("PRAGMA synchronous = FULL");
    await raw.execute(`CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL,
      revision INTEGER NOT NULL, expires_at INTEGER)`);
    const store = system.store<typeof VALUE>("bench");
    const keys = Array.from({ length: keyCount }, (_, i) => `cart:${String(i).padStart(6, "0")}`);
    const key = (i: number) => keys[i % keyCount]!;
    const bytes = msgpack.encode(VALUE);
    const upsert =
      `INSERT INTO kv (key, value, revision) VALUES (?, ?, 1) ON CONFLICT (key) DO UPDATE
       SET value = excluded.value, revision = revision + 1`;
    // Seed both sides.
    for (const k of keys) await store.set(k, VALUE);
    await raw.batch(keys.map((k) => ({ sql: upsert, args: [k, bytes] })), "write");

    // Current revisions of both sides, read just before the compare-and-set case.
    const revisions = new Map<string, number>();
    const rawRevisions = new Map<string, number>();
    const readRevisions = async () => {
      for await (const r of store.list()) revisions.set(r.key, r.revision);
      for (const r of (await raw.execute("SELECT key, revision FROM kv")).rows) {
        rawRevisions.set(String(r.key), Number(r.revision));
      }
    };

    const cases: {
      what: string;
      raw: string;
      store: () => Promise<number>;
      rawRun: () => Promise<number>;
      prepare?: () => Promise<void>;
    }[] = [
      {
        what: "get, one at a time",
        raw: "SELECT value … WHERE key = ?",
        store: () => serial(seconds, (i) => store.get(key(i))),
        rawRun: () =>
          serial(seconds, async (i) => {
            const rs = await raw.execute({
              sql: "SELECT value, revision, expires_at FROM kv WHERE key = ?",
              args: [key(i)],
            });
            return msgpack.decode(new Uint8Array(rs.rows[0]!.value as ArrayBuffer));
          }),
      },
      {
        what: "set, one at a time",
        raw: "INSERT … ON CONFLICT DO UPDATE (autocommit)",
        store: () => serial(seconds, (i) => store.set(key(i), VALUE)),
        rawRun: () =>
          serial(
            seconds,
            (i) => raw.execute({ sql: upsert, args: [key(i), msgpack.encode(VALUE)] }),
          ),
      },
      {
        what: "set, 64 concurrent",
        raw: "the same upserts, 64 concurrent",
        store: () => concurrent(seconds, 64, (i) => store.set(key(i), VALUE)),
        rawRun: () =>
          concurrent(
            seconds,
            64,
            (i) => raw.execute({ sql: upsert, args: [key(i), msgpack.encode(VALUE)] }),
          ),
      },
      {
        what: "compare-and-set, one at a time",
        prepare: readRevisions,
        raw: "UPDATE … WHERE key = ? AND revision = ? RETURNING",
        store: () =>
          serial(seconds, async (i) => {
            const k = key(i);
            const { revision } = await store.set(k, VALUE, { ifRevision: revisions.get(k)! });
            revisions.set(k, revision);
          }),
        rawRun: () =>
          serial(seconds, async (i) => {
            const k = key(i);
            const rs = await raw.execute({
              sql: `UPDATE kv SET value = ?, revision = revision + 1
                    WHERE key = ? AND revision = ? RETURNING revision`,
              args: [msgpack.encode(VALUE), k, rawRevisions.get(k)!],
            });
            if (!rs.rows[0]) throw new Error("raw compare-and-set failed");
            rawRevisions.set(k, Number(rs.rows[0].revision));
          }),
      },
    ];
    const results: StoreBenchResult[] = [];
    for (const c of cases) {
      await c.prepare?.();
      const s: number[] = [], r: number[] = [];
      for (let round = 0; round < rounds; round++) {
        r.push(await c.rawRun());
        s.push(await c.store());
      }
      const storePerSec = median(s), rawPerSec = median(r);
      results.push({
        what: c.what,
        raw: c.raw,
        storePerSec,
        rawPerSec,
        ratio: storePerSec / rawPerSec,
      });
    }
    // Raw at its fastest for writes, for reference: 100 upserts per transaction.
    const batched = median(
      await Promise.all([0].map(() =>
        serial(seconds, (i) =>
          raw.batch(
            Array.from(
              { length: 100 },
              (_, j) => ({ sql: upsert, args: [key(i * 100 + j), bytes] }),
            ),
            "write",
          ))
      )),
    ) * 100;
    results.push({
      what: "(reference) raw upserts, 100 per transaction",
      raw: "batch of 100 upserts",
      storePerSec: NaN,
      rawPerSec: batched,
      ratio: NaN,
    });
    return results;
  } finally {
    raw.close();
    await system.close();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const f = (n: number) => Number.isNaN(n) ? "—" : Math.round(n).toLocaleString("en");
  console.log(
    `Store benchmark — ${new Date().toISOString()} — ${navigator.hardwareConcurrency} cores, ` +
      `Deno ${Deno.version.deno}; libSQL file, WAL, synchronous=FULL, ~100 B values\n`,
  );
  for (const r of await benchStore()) {
    console.log(
      `${r.what.padEnd(46)} store ${f(r.storePerSec).padStart(8)}/s   raw ${
        f(r.rawPerSec).padStart(8)
      }/s (${r.raw})   ratio ${Number.isNaN(r.ratio) ? "—" : r.ratio.toFixed(2)}`,
    );
  }
}
