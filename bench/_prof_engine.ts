// Profiling harness (not a benchmark): the journal's database engine alone on this thread (no
// worker, no actors): batches of PROF_N (default 1000) one-event appends of as many activated actors, against raw
// prepared batches of as many rows on the same kind of file. PROF_BATCHES (default 200).
import { DatabaseSync } from "node:sqlite";
import { Engine, type WriteBatch } from "../adapters/libsql/_engine.ts";
import { nativeExecutor } from "../adapters/libsql/_native.ts";
import { encodeAppendLists } from "../adapters/libsql/_wire.ts";
import { msgpack } from "../src/codec/mod.ts";
import type { Append } from "../spi.ts";

const dir = await Deno.makeTempDir();
const exec = nativeExecutor({
  path: `${dir}/e.db`,
  busySliceMs: 100,
  synchronous: "full",
  checkpointElsewhere: false,
});
const engine = new Engine(exec, { url: `file:${dir}/e.db` });
await engine.open();
const N = Number(Deno.env.get("PROF_N") ?? 1000);
const none = { releases: [], deletes: [], custom: [] };
const act = await engine.batch({
  groups: encodeAppendLists([]),
  activations: Array.from({ length: N }, (_, i) => ({ actor: `ledger/l${i}`, node: "n" })),
  ...none,
  now: Date.now(),
} as WriteBatch, 10_000);
const epochs = act.activations.map((r) => {
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return (r.value as { epoch: number }).epoch;
});
const seqs = new Array(N).fill(0);
const data = msgpack.encode(1);
const batches = Number(Deno.env.get("PROF_BATCHES") ?? 200);
async function round(): Promise<number> {
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) {
    const groups: Append[][] = [];
    for (let i = 0; i < N; i++) {
      groups.push([{
        actor: `ledger/l${i}`,
        epoch: epochs[i]!,
        expectedSeq: seqs[i]!,
        events: [{ type: "added", version: 1, data, at: Date.now() }],
      }]);
    }
    const out = await engine.batch(
      {
        groups: encodeAppendLists(groups),
        activations: [],
        ...none,
        now: Date.now(),
      } as WriteBatch,
      10_000,
    );
    if (out.groups.some((g: number) => g !== 1)) {
      throw new Error("refused " + JSON.stringify(out).slice(0, 300));
    }
    for (let i = 0; i < N; i++) seqs[i]++;
  }
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
await engine.close();
await Deno.remove(dir, { recursive: true });
