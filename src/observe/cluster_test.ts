import assert from "node:assert/strict";
import { memoryJournal } from "../journal/memory.ts";
import { lastSeq } from "./control.ts";

Deno.test("lastSeq() finds the last event with a few reads", async () => {
  const journal = memoryJournal();
  const { epoch } = await journal.activate("t/x");
  let reads = 0;
  const counted = {
    ...journal,
    read: (...a: Parameters<typeof journal.read>) => {
      reads++;
      return journal.read(...a);
    },
  };
  assert.equal(await lastSeq(counted, "t/x"), 0);
  const ev = { type: "e", version: 1, data: new Uint8Array(), at: 0 };
  await journal.append({ actor: "t/x", epoch, expectedSeq: 0, events: Array(1000).fill(ev) });
  reads = 0;
  assert.equal(await lastSeq(counted, "t/x"), 1000);
  assert.ok(reads <= 25, `${reads} reads`);
  await journal.close();
});
