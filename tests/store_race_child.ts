/**
 * A child process of the cross-process store test (`adapters/libsql/store_test.ts`): a
 * one-node system on the shared database file. It prints "ready", waits for "go" on stdin,
 * then races the other processes to advance the record `race/k` one round at a time with
 * compare-and-set, and prints the rounds it won and how many conflicts it saw as JSON.
 *
 * Usage: deno run -A tests/store_race_child.ts <file: url> <id> <rounds>
 */

import { createSystem } from "../mod.ts";

const [url, id, roundsArg] = Deno.args;
const rounds = Number(roundsArg);
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
