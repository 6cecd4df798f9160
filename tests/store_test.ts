/** `system.store()`: how a node wires the record store (the store itself: src/store/). */
import assert from "node:assert/strict";
import { type ActorError, createSystem, inProcessMesh, memoryJournal } from "../mod.ts";
import { memoryStore, type StoreBackend } from "../spi.ts";

const isCode = (code: string) => (err: ActorError) => err.code === code;

Deno.test("system.store() keeps values bounded by maxPayload and refuses use after close()", async () => {
  const system = await createSystem({ logger: "error", maxPayload: 100 });
  const carts = system.store<string>("carts");
  assert.equal(system.store("carts"), carts);
  assert.equal(carts.name, "carts");
  assert.throws(() => system.store("bad name"), TypeError);
  await carts.set("u1", "small");
  await assert.rejects(carts.set("u2", "x".repeat(200)), isCode("bad_payload"));
  assert.equal((await carts.get("u1"))?.value, "small");
  await system.close();
  await assert.rejects(carts.get("u1"), isCode("closed"));
  assert.throws(() => system.store("carts"), isCode("closed"));
});

Deno.test("systems given one memory journal share their stores; a store option wins", async () => {
  const journal = memoryJournal();
  const mesh = inProcessMesh();
  const a = await createSystem({ journal, mesh, logger: "error" });
  const b = await createSystem({ journal, mesh, logger: "error" });
  const inner = memoryStore();
  let closes = 0;
  const own: StoreBackend = {
    get: inner.get.bind(inner),
    set: inner.set.bind(inner),
    delete: inner.delete.bind(inner),
    list: inner.list.bind(inner),
    purge: inner.purge.bind(inner),
    close: () => (closes++, inner.close()),
  };
  const c = await createSystem({ journal, mesh, logger: "error", store: own });
  try {
    const { revision } = await a.store("shared").set("k", "from a");
    assert.deepEqual(await b.store("shared").get("k"), { key: "k", value: "from a", revision });
    await assert.rejects(
      b.store("shared").set("k", "stale", { ifRevision: revision + 1 }),
      isCode("conflict"),
    );
    assert.equal(await c.store("shared").get("k"), undefined);
    await c.store("shared").set("k", "in c's backend");
    assert.equal((await own.get("shared", "k", Date.now()))?.revision, 1);
  } finally {
    await a.close();
    await b.close();
    await c.close();
    await journal.close();
  }
  assert.equal(closes, 0, "a store given in the options is the caller's to close");
});
