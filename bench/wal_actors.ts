/**
 * WAL bytes and time per event by the number of actors a shard holds: commits of one event each
 * of 350 actors drawn at random among N (each activated first), through the journal's database
 * engine on this thread (`synchronous=NORMAL`: the fsync is not what is measured), next to raw
 * batches of the same rows into the same `events` table (`node:sqlite`, prepared once: only the
 * insert, no head, no fence). The WAL grows by what each commit writes (no checkpoint runs).
 *
 * Run: `deno run -A bench/wal_actors.ts [1000 10000 100000 1000000]`.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { msgpack } from "../src/codec/mod.ts";
import { engineActors } from "./_engine_actors.ts";

const BATCH = 350;
const WARM = 30;
const MEASURED = 20;
const data = msgpack.encode({ amount: 1 });

/** 350 distinct actor indexes among `n`. */
function pick(n: number): number[] {
  const chosen = new Set<number>();
  while (chosen.size < BATCH) chosen.add(Math.floor(Math.random() * n));
  return [...chosen];
}

/** The journal's engine: WAL bytes and µs per event. */
async function journal(dir: string, n: number): Promise<[number, number]> {
  const path = `${dir}/j.db`;
  const e = await engineActors(path, n, "normal");
  try {
    for (let c = 0; c < WARM; c++) await e.append(pick(n), data);
    const w0 = Deno.statSync(`${path}-wal`).size;
    const t0 = performance.now();
    for (let c = 0; c < MEASURED; c++) await e.append(pick(n), data);
    const us = (performance.now() - t0) * 1000 / (MEASURED * BATCH);
    return [(Deno.statSync(`${path}-wal`).size - w0) / (MEASURED * BATCH), us];
  } finally {
    e.close();
  }
}

/** Raw batches of the same rows into the journal's `events` table: WAL bytes and µs per row. */
function raw(dir: string, n: number): [number, number] {
  const path = `${dir}/raw.db`;
  const db = new DatabaseSync(path);
  try {
    db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0",
    );
    db.exec(`CREATE TABLE events (pos INTEGER PRIMARY KEY, actor INTEGER NOT NULL,
      seq INTEGER NOT NULL, prev INTEGER, type TEXT NOT NULL, version INTEGER NOT NULL,
      data BLOB NOT NULL, at INTEGER NOT NULL)`);
    const stmt = db.prepare(
      `INSERT INTO events VALUES ${Array.from({ length: BATCH }, () => "(?,?,?,?,?,?,?,?)")}`,
    );
    const seqs = new Array<number>(n).fill(0);
    let pos = 0;
    const commit = () => {
      const args = [];
      for (const i of pick(n)) {
        pos++;
        args.push(pos, i + 1, ++seqs[i]!, null, "added", 1, data, Date.now());
      }
      db.exec("BEGIN IMMEDIATE");
      stmt.run(...args);
      db.exec("COMMIT");
    };
    for (let c = 0; c < WARM; c++) commit();
    const w0 = Deno.statSync(`${path}-wal`).size;
    const t0 = performance.now();
    for (let c = 0; c < MEASURED; c++) commit();
    const us = (performance.now() - t0) * 1000 / (MEASURED * BATCH);
    return [(Deno.statSync(`${path}-wal`).size - w0) / (MEASURED * BATCH), us];
  } finally {
    db.close();
  }
}

const sizes = Deno.args.length > 0 ? Deno.args.map(Number) : [1000, 10_000, 100_000, 1_000_000];
for (const n of sizes) {
  const dir = await Deno.makeTempDir();
  try {
    const [jw, jt] = await journal(dir, n);
    const [rw, rt] = raw(dir, n);
    console.log(
      `${n} actors: journal ${jw.toFixed(0)} WAL bytes/event, ${jt.toFixed(1)} µs/event; ` +
        `raw inserts ${rw.toFixed(0)} bytes/row, ${rt.toFixed(1)} µs/row → ` +
        `WAL ratio ${(jw / rw).toFixed(2)}, time ratio ${(jt / rt).toFixed(2)}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
