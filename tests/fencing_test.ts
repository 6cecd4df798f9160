import assert from "node:assert/strict";
import { createSystem, memoryJournal } from "../mod.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import type { Journal } from "../src/journal/types.ts";
import { Account } from "./fixtures.ts";

/**
 * Two nodes that both believe they own one actor (they do not share a mesh, as in a
 * partition or a KV race) but share its journal: the epoch fence makes the stale activation
 * fail on its next write and stop, and the log has no fork or gap.
 */
async function twoOwners(journal: Journal): Promise<void> {
  const a = await createSystem({ actors: [Account], journal, logger: "silent" });
  const b = await createSystem({ actors: [Account], journal, logger: "silent" });
  try {
    assert.equal(await a.ref(Account, "x").ask("deposit", 1), 1);
    assert.equal(await b.ref(Account, "x").ask("deposit", 10), 11, "b activates from the log");
    // a's activation is stale now: its write is refused and it stops
    await assert.rejects(a.ref(Account, "x").ask("deposit", 100), { code: "unavailable" });
    // the next message reactivates on a from the log (and fences b in turn)
    assert.equal(await a.ref(Account, "x").ask("deposit", 1000), 1011);
    await assert.rejects(b.ref(Account, "x").ask("deposit", 5), { code: "unavailable" });
    const seqs: number[] = [];
    const amounts: number[] = [];
    for await (const e of a.history(Account, "x")) {
      seqs.push(e.seq);
      amounts.push((e.payload as { amount: number }).amount);
    }
    assert.deepEqual(seqs, [1, 2, 3], "no gap, no fork");
    assert.deepEqual(amounts, [1, 10, 1000], "refused writes left nothing");
  } finally {
    await a.close();
    await b.close();
  }
}

Deno.test("two activations of one actor on one memory journal: the stale one is fenced", async () => {
  const journal = memoryJournal();
  await twoOwners(journal);
  await journal.close();
});

Deno.test("two activations of one actor on one libSQL file: the stale one is fenced", async () => {
  const dir = await Deno.makeTempDir();
  const journal = libsqlJournal({ url: `file:${dir}/fence.db` });
  try {
    await twoOwners(journal);
  } finally {
    await journal.close();
    await Deno.remove(dir, { recursive: true });
  }
});
