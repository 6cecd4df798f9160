/** A `file:` database in a directory that does not exist yet: the directory is created. */
import assert from "node:assert/strict";
import { createSystem, defineActor } from "../../mod.ts";
import { libsqlJournal, libsqlStore } from "./mod.ts";
import { databaseDir } from "./_dirs.ts";

const Counter = defineActor({
  name: "counter",
  initialState: () => 0,
  events: { added: (s, e: { by: number }) => s + e.by },
  handlers: {
    add(ctx, by: number) {
      ctx.emit("added", { by });
      return ctx.state;
    },
  },
});

Deno.test("databaseDir: the directory of a file: URL", () => {
  assert.equal(databaseDir("file:./data/troupe.db"), "./data");
  assert.equal(databaseDir("file:data/a/b.db?mode=rwc"), "data/a");
  assert.equal(databaseDir("file:///srv/troupe%20x/t.db"), "/srv/troupe x");
  assert.equal(databaseDir("file:troupe.db"), undefined);
  assert.equal(databaseDir(":memory:"), undefined);
  assert.equal(databaseDir("libsql://db.example"), undefined);
});

Deno.test("a journal URL in a missing directory works: createSystem, libsqlJournal, libsqlStore", async () => {
  const root = await Deno.makeTempDir();
  try {
    // (the README's relative "file:./data/troupe.db" in a fresh folder: tests/outside_test.ts)
    const system = await createSystem({
      actors: [Counter],
      journal: `file:${root}/data/troupe.db`,
    });
    assert.equal(await system.ref(Counter, "c").ask("add", 2), 2);
    await system.close();
    assert.ok((await Deno.stat(`${root}/data/troupe.db`)).isFile);
    const journal = libsqlJournal({ url: `file://${root}/a/b/j.db` });
    await journal.activate("counter/x");
    await journal.close();
    const store = libsqlStore({ url: `file:${root}/s/s.db` });
    assert.equal(await store.set("k", "v", new Uint8Array([1]), { ifRevision: 0 }, Date.now()), 1);
    await store.close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
