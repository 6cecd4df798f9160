/**
 * A child process of the cross-process store test (`adapters/libsql/store_test.ts`): a
 * one-node system on the shared database file. It prints "ready", waits for "go" on stdin,
 * then races the other processes to advance the record `race/k` one round at a time with
 * compare-and-set, and prints the rounds it won and how many conflicts it saw as JSON.
 * Before the race, every racer checks in (a record `ready-<id>`) and waits until all
 * `<racers>` have: on a loaded machine a racer scheduled late would otherwise find the race
 * over before it ran.
 *
 * Usage: deno run -A tests/store_race_child.ts <file: url> <id> <rounds> <racers>
 */

import { createSystem } from "../mod.ts";

const [url, id, roundsArg, racersArg] = Deno.args;
const rounds = Number(roundsArg);
const racers = Number(racersArg ?? 1);
const system = await createSystem({ journal: url!, node: `racer-${id}`, logger: "error" });
try {
  const store = system.store<{ round: number; by: string }>("race");
  await store.get("k"); // opens the database (its thread) before the race starts
  console.log("ready");
  const reader = Deno.stdin.readable.getReader();
  let input = "";
  while (!input.includes("go")) {
    const chunk = await reader.read();
    if (chunk.done) throw new Error("stdin closed before go");
    input += new TextDecoder().decode(chunk.value);
  }
  reader.releaseLock();
  const all = system.store<number>("race-ready");
  await all.set(`ready-${id}`, 1);
  const end = performance.now() + 30_000;
  for (;;) {
    let n = 0;
    for await (const _ of all.list({ prefix: "ready-" })) n++;
    if (n >= racers) break;
    if (performance.now() > end) throw new Error(`only ${n} of ${racers} racers checked in`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const won: number[] = [];
  let conflicts = 0;
  for (;;) {
    const r = await store.get("k");
    if (!r) throw new Error("the record is missing");
    if (r.value.round >= rounds) break;
    const round = r.value.round + 1;
    try {
      await store.set("k", { round, by: id! }, { ifRevision: r.revision });
      won.push(round);
    } catch (err) {
      if ((err as { code?: string }).code !== "conflict") throw err;
      conflicts++;
    }
  }
  console.log(JSON.stringify({ id, won, conflicts }));
} finally {
  await system.close();
}
