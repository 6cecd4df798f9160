// Profiling harness (not a benchmark): the journal's database engine alone on this thread (no
// worker, no actors): batches of PROF_N (default 1000) one-event appends of as many activated actors, against raw
// prepared batches of as many rows on the same kind of file. PROF_BATCHES (default 200).
import { DatabaseSync } from "node:sqlite";
import { msgpack } from "../src/codec/mod.ts";
import { engineActors } from "./_engine_actors.ts";

const dir = await Deno.makeTempDir();
const N = Number(Deno.env.get("PROF_N") ?? 1000);
const engine = await engineActors(`${dir}/e.db`, N, "full");
const data = msgpack.encode(1);
const batches = Number(Deno.env.get("PROF_BATCHES") ?? 200);
const all = Array.from({ length: N }, (_, i) => i);
async function round(): Promise<number> {
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) await engine.append(all, data);
  return (N * batches) / ((performance.now() - t0) / 1000);
}
function raw(): number {
  const db = new DatabaseSync(`${dir}/raw.db`);
  db.exec(
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE IF NOT EXISTS events (pos INTEGER PRIMARY KEY, actor INTEGER, seq INTEGER, prev INTEGER, type TEXT, version INTEGER, data BLOB, at INTEGER)",
  );
  const stmt = db.prepare(
    `INSERT INTO events VALUES ${Array.from({ length: N }, () => "(?,?,?,?,?,?,?,?)").join(",")}`,
  );
  let pos = Number(
    (db.prepare("SELECT coalesce(max(pos), 0) AS m FROM events").get() as { m: number }).m,
  );
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) {
    const args = [];
    for (let r = 0; r < N; r++) {
      pos++;
      args.push(pos, r, b, pos - N, "added", 1, data, Date.now());
    }
    db.exec("BEGIN IMMEDIATE");
    stmt.run(...args);
    db.exec("COMMIT");
  }
  db.close();
  return (N * batches) / ((performance.now() - t0) / 1000);
}
for (let r = 0; r < 3; r++) {
  console.log(
    `engine ${Math.round(await round())} rows/s; raw prepared ${Math.round(raw())} rows/s`,
  );
}
engine.close();
await Deno.remove(dir, { recursive: true });
