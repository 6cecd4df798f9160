/**
 * Feed read rate against raw reads of the journal's `events` table, in the same run, on the same
 * libSQL files (local, WAL):
 *
 * - **one type**: 200,000 events of 1,000 actors of one type; `system.feed(Def, { after,
 *   live: false })` reads the backlog to its end (a non-live feed ends once caught up);
 * - **two types mixed**: the same plus as many events of 1,000 actors of another type,
 *   interleaved in commit order; the feed of one type reads every row and yields half;
 * - **3 shards**: the one-type log spread over 3 shard files.
 *
 * Baselines read the same rows in the same order with the feed's own query (the journal's
 * `committedStatement`: `events` joined to `activations` for the actor's key, `pos > ?
 * ORDER BY pos LIMIT ?`), in pages of 500 (the feed's default; 5,000 was no faster for either
 * raw reader here), each shard in turn, keeping the rows of the type (actor key prefix):
 *
 * - `@libsql/client` (`file:` URL, on this thread, `intMode: "number"`);
 * - `node:sqlite` (what the journal's database thread uses), the statement prepared once, rows
 *   as arrays: the fastest reader of the file on one thread.
 *
 * For each, "bytes": the payload is only touched; "decoded": it is decoded with msgpackr's
 * `unpack`, as a raw reader of the payloads would.
 *
 * Rounds alternate baselines and feed (5 each, median and range kept) after a warm-up read of
 * each, so the files are in the page cache and background load hits all alike. CPU time of this
 * process (all threads, the journal's database thread included) per event is given too, since
 * throughput on a shared machine is noisy.
 *
 * `deno run -A bench/feed.ts [--events=200000] [--actors=1000] [--rounds=5] [--skip-shards]`
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { createClient } from "@libsql/client/node";
import { unpack } from "msgpackr";
import { createSystem, defineActor, type System } from "../mod.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { cpuMicros, loadAverage } from "./_proc.ts";

const EVENTS_PER_ASK = 20;

/** The events of the type the feeds read: a small object payload (~40 bytes encoded). */
const Ledger = defineActor({
  name: "ledger",
  initialState: () => ({ total: 0 }),
  events: {
    added: (s, e: { amount: number; ref: string }) => ({ total: s.total + e.amount }),
  },
  handlers: {
    add(ctx, n: number) {
      for (let i = 0; i < EVENTS_PER_ASK; i++) {
        ctx.emit("added", { amount: n, ref: `r-${ctx.seq + 1}` });
      }
      return ctx.state.total;
    },
  },
  snapshotEvery: 1_000,
  idleAfter: 600_000,
});

/** Another type, mixed in: its events are read by the feed and filtered out. */
const Other = defineActor({
  name: "other",
  initialState: () => ({ total: 0 }),
  events: {
    noted: (s, e: { amount: number; ref: string }) => ({ total: s.total + e.amount }),
  },
  handlers: {
    add(ctx, n: number) {
      for (let i = 0; i < EVENTS_PER_ASK; i++) {
        ctx.emit("noted", { amount: n, ref: `o-${ctx.seq + 1}` });
      }
      return ctx.state.total;
    },
  },
  snapshotEvery: 1_000,
  idleAfter: 600_000,
});

/** The feed's query (adapters/libsql/_sql.ts `committedStatement`). */
const COMMITTED = `SELECT e.pos, a.actor, e.seq, e.type, e.version, e.data, e.at FROM events AS e
  CROSS JOIN activations AS a ON a.id = e.actor
  WHERE e.pos > ? ORDER BY e.pos LIMIT ?`;

/** One measured read: events yielded per second and CPU µs per event yielded. */
export interface Read {
  perSecond: number;
  cpuUs: number;
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(fn: () => Promise<number>): Promise<Read> {
  const c0 = cpuMicros("self");
  const t0 = performance.now();
  const n = await fn();
  const ms = performance.now() - t0;
  const cpu = cpuMicros("self") - c0;
  return { perSecond: (n / ms) * 1000, cpuUs: cpu / n };
}

/**
 * Fills the journal at `urls` with `events` events of `actors` actors of each type in `types`,
 * interleaved (each round of asks touches every actor of every type).
 */
async function fill(urls: string[], types: 1 | 2, events: number, actors: number): Promise<void> {
  const journal = libsqlJournal(
    urls.length === 1
      ? { url: urls[0]!, synchronous: "normal" }
      : { shards: urls, synchronous: "normal" },
  );
  const system = await createSystem({ actors: [Ledger, Other], journal, logger: "error" });
  try {
    const refs = Array.from({ length: actors }, (_, i) => system.ref(Ledger, `l${i}`));
    const others = Array.from({ length: actors }, (_, i) => system.ref(Other, `o${i}`));
    const rounds = Math.ceil(events / (actors * EVENTS_PER_ASK));
    for (let r = 0; r < rounds; r++) {
      const all = types === 1 ? refs : refs.flatMap((ref, i) => [ref, others[i]!]);
      for (let i = 0; i < all.length; i += 200) {
        await Promise.all(all.slice(i, i + 200).map((ref) => ref.ask("add", 1)));
      }
    }
  } finally {
    await system.close();
    await journal.close(); // a journal given to createSystem is its giver's to close
  }
}

/** `system.feed(Ledger, { live: false })` to its end; returns the events yielded. */
async function readFeed(system: System, batch?: number): Promise<number> {
  let n = 0;
  let sum = 0;
  for await (
    const e of system.feed(Ledger, { live: false, ...(batch ? { batch } : {}) })
  ) {
    sum += (e.payload as { amount: number }).amount;
    n++;
  }
  if (sum !== n) throw new Error(`feed: payloads summed to ${sum}, expected ${n}`);
  return n;
}

type Client = ReturnType<typeof createClient>;

/**
 * The raw reader on `@libsql/client`: pages of `limit` rows of each shard in turn (as the feed
 * reads them), keeping the type's rows; `decode`: msgpack-decodes their payload.
 */
async function readRaw(clients: Client[], limit: number, decode: boolean): Promise<number> {
  const after = clients.map(() => 0);
  const done = clients.map(() => false);
  let n = 0;
  let sum = 0;
  let bytes = 0;
  while (done.some((d) => !d)) {
    for (let s = 0; s < clients.length; s++) {
      if (done[s]) continue;
      const rs = await clients[s]!.execute({ sql: COMMITTED, args: [after[s]!, limit] });
      const rows = rs.rows;
      if (rows.length < limit) done[s] = true;
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        after[s] = row[0] as number;
        const actor = row[1] as string;
        if (!actor.startsWith("ledger/")) continue;
        const data = row[5] as ArrayBuffer;
        if (decode) sum += (unpack(new Uint8Array(data)) as { amount: number }).amount;
        else bytes += data.byteLength;
        n++;
      }
    }
  }
  if (decode && sum !== n) throw new Error(`raw: payloads summed to ${sum}, expected ${n}`);
  if (!decode && bytes === 0) throw new Error("raw: no payload bytes");
  return n;
}

/**
 * The raw reader on `node:sqlite`, statement prepared once, rows as arrays; `decode`: as
 * {@link readRaw}.
 */
function readSqlite(dbs: DatabaseSync[], limit: number, decode: boolean): number {
  const stmts = dbs.map((db) => {
    const st = db.prepare(COMMITTED);
    st.setReturnArrays(true);
    return st;
  });
  const after = dbs.map(() => 0);
  const done = dbs.map(() => false);
  let n = 0;
  let sum = 0;
  let bytes = 0;
  while (done.some((d) => !d)) {
    for (let s = 0; s < dbs.length; s++) {
      if (done[s]) continue;
      const rows = stmts[s]!.all(after[s]!, limit) as unknown as unknown[][];
      if (rows.length < limit) done[s] = true;
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        after[s] = row[0] as number;
        if (!(row[1] as string).startsWith("ledger/")) continue;
        const data = row[5] as Uint8Array;
        if (decode) sum += (unpack(data) as { amount: number }).amount;
        else bytes += data.byteLength;
        n++;
      }
    }
  }
  if (decode && sum !== n) throw new Error(`node:sqlite: payloads summed to ${sum}, expected ${n}`);
  if (!decode && bytes === 0) throw new Error("node:sqlite: no payload bytes");
  return n;
}

/** The figures of one layout: per reader, the rounds. */
export type FeedBench = Record<string, Read[]>;

/** Fills a journal of `shards` files with `types` types and reads it every way, `rounds` times. */
export async function benchFeed(
  options: { events?: number; actors?: number; types?: 1 | 2; shards?: number; rounds?: number } =
    {},
): Promise<{ readers: FeedBench; events: number; rows: number }> {
  const events = options.events ?? 200_000;
  const actors = options.actors ?? 1_000;
  const types = options.types ?? 1;
  const shards = options.shards ?? 1;
  const rounds = options.rounds ?? 5;
  const dir = await Deno.makeTempDir({ prefix: "troupe-bench-feed-" });
  try {
    const urls = Array.from({ length: shards }, (_, i) => `file:${dir}/j${i}.db`);
    await fill(urls, types, events, actors);
    const expected = Math.ceil(events / (actors * EVENTS_PER_ASK)) * actors * EVENTS_PER_ASK;
    const journal = libsqlJournal(shards === 1 ? { url: urls[0]! } : { shards: urls });
    const system = await createSystem({ actors: [], journal, logger: "error" });
    const clients = urls.map((url) => createClient({ url, intMode: "number" }));
    const dbs = urls.map((u) => new DatabaseSync(u.slice("file:".length), { readOnly: true }));
    const readers: Record<string, () => Promise<number>> = {
      "raw @libsql/client, bytes": () => readRaw(clients, 500, false),
      "raw @libsql/client, decoded": () => readRaw(clients, 500, true),
      "raw node:sqlite, bytes": () => Promise.resolve(readSqlite(dbs, 500, false)),
      "raw node:sqlite, decoded": () => Promise.resolve(readSqlite(dbs, 500, true)),
      "system.feed (batch 500, the default)": () => readFeed(system),
      "system.feed, batch 5000": () => readFeed(system, 5_000),
    };
    const out: FeedBench = {};
    try {
      for (const [name, read] of Object.entries(readers)) {
        const n = await read(); // warm-up: page cache, statements, JIT
        if (n !== expected) throw new Error(`${name}: read ${n} events, expected ${expected}`);
        out[name] = [];
      }
      for (let r = 0; r < rounds; r++) {
        for (const [name, read] of Object.entries(readers)) out[name]!.push(await timed(read));
      }
    } finally {
      for (const c of clients) c.close();
      for (const db of dbs) db.close();
      await system.close();
      await journal.close();
    }
    return { readers: out, events: expected, rows: expected * types };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const arg = (name: string, d: number) => {
    const a = Deno.args.find((x) => x.startsWith(`--${name}=`));
    return a ? Number(a.slice(name.length + 3)) : d;
  };
  const events = arg("events", 200_000);
  const actors = arg("actors", 1_000);
  const rounds = arg("rounds", 5);
  const k = (x: number) => Math.round(x).toLocaleString("en");
  console.log(
    `feed read rate vs raw reads — ${
      new Date().toISOString()
    } — ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, load ${
      loadAverage().join(" ")
    }`,
  );
  const layouts: { title: string; types: 1 | 2; shards: number }[] = [
    { title: "one type, 1 file", types: 1, shards: 1 },
    { title: "two types mixed (feed of one), 1 file", types: 2, shards: 1 },
  ];
  if (!Deno.args.includes("--skip-shards")) {
    layouts.push({ title: "one type, 3 shard files", types: 1, shards: 3 });
  }
  for (const l of layouts) {
    const t0 = performance.now();
    const r = await benchFeed({ events, actors, types: l.types, shards: l.shards, rounds });
    console.log(
      `${l.title}: ${k(r.events)} events yielded of ${k(r.rows)} rows (filled and read in ${
        ((performance.now() - t0) / 1000).toFixed(0)
      } s; load ${loadAverage().join(" ")})`,
    );
    const base = median(r.readers["raw node:sqlite, decoded"]!.map((x) => x.perSecond));
    const client = median(r.readers["raw @libsql/client, decoded"]!.map((x) => x.perSecond));
    for (const [name, reads] of Object.entries(r.readers)) {
      const rates = reads.map((x) => x.perSecond);
      const m = median(rates);
      console.log(
        `   ${name.padEnd(40)} ${k(m).padStart(9)} ev/s  (${k(Math.min(...rates))}–${
          k(Math.max(...rates))
        })  cpu ${median(reads.map((x) => x.cpuUs)).toFixed(2).padStart(5)} µs/ev  ${
          (m / base).toFixed(2)
        }× node:sqlite decoded, ${(m / client).toFixed(2)}× @libsql/client decoded`,
      );
    }
  }
}
