import assert from "node:assert/strict";
import { journalConformance } from "./conformance.ts";
import { memoryJournal } from "./memory.ts";

journalConformance("memory", () => Promise.resolve(memoryJournal()));

Deno.test("memoryJournal() keeps at most maxPerActor idempotency records, dropping the oldest", async () => {
  let now = 1_000;
  const j = memoryJournal({ retention: { maxAgeMs: 10_000, maxPerActor: 3 }, now: () => now });
  const { epoch } = await j.activate("t/a");
  const reply = new Uint8Array([1]);
  for (const key of ["k1", "k2", "k3", "k4"]) {
    await j.append({
      actor: "t/a",
      epoch,
      expectedSeq: 0,
      events: [],
      idempotency: { key, reply, fingerprint: "h" },
    });
    now += 1;
  }
  assert.equal(await j.reply("t/a", "k1"), undefined);
  assert.ok(await j.reply("t/a", "k2"));
  now += 20_000; // k2..k4 are now too old
  await j.append({
    actor: "t/a",
    epoch,
    expectedSeq: 0,
    events: [],
    idempotency: { key: "k5", reply, fingerprint: "h" },
  });
  assert.equal(await j.reply("t/a", "k4"), undefined);
  assert.ok(await j.reply("t/a", "k5"));
  await j.close();
});
