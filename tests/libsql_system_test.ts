import assert from "node:assert/strict";
import { createSystem, defineActor } from "../mod.ts";
import { msgpack } from "../spi.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { Stores } from "../src/store/store.ts";
import { Account } from "./fixtures.ts";
import { sqlite } from "./_sqlite.ts";

Deno.test("a journal URL persists events in a libSQL file across systems", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const url = `file:${dir}/t.db`;
    let system = await createSystem({ actors: [Account], journal: url });
    for (let i = 0; i < 15; i++) await system.ref(Account, "p").ask("deposit", 2);
    await system.close();
    system = await createSystem({ actors: [Account], journal: url });
    assert.equal(await system.ref(Account, "p").ask("balance"), 30);
    let n = 0;
    for await (const _ of system.history(Account, "p", { from: 11 })) n++;
    assert.equal(n, 5);
    await system.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Emits many events per turn: `note(count)` appends `count` events numbered on from the last. */
const Ledger = defineActor({
  name: "ledger",
  initialState: () => ({ count: 0 }),
  events: { noted: (s, _e: { n: number }) => ({ count: s.count + 1 }) },
  handlers: {
    note(ctx, count: number) {
      const base = ctx.state.count;
      for (let i = 1; i <= count; i++) ctx.emit("noted", { n: base + i });
      return ctx.state.count;
    },
  },
});

Deno.test("system.history() reads past one page: every event of a long log, in order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const system = await createSystem({ actors: [Ledger], journal: `file:${dir}/h.db` });
    try {
      const ledger = system.ref(Ledger, "l");
      // 1200 events: more than two pages of history (500 events a page).
      for (let i = 1; i <= 3; i++) assert.equal(await ledger.ask("note", 400), 400 * i);
      const seqs: number[] = [];
      const ns: number[] = [];
      for await (const e of system.history(Ledger, "l")) {
        assert.equal(e.type, "noted");
        seqs.push(e.seq);
        ns.push(e.payload.n);
      }
      const upTo1200 = Array.from({ length: 1200 }, (_, i) => i + 1);
      assert.deepEqual(seqs, upTo1200);
      assert.deepEqual(ns, upTo1200);
      // From 201: 1000 events, exactly two full pages (the third read comes back empty).
      const tail: number[] = [];
      for await (const e of system.history(Ledger, "l", { from: 201 })) tail.push(e.seq);
      assert.deepEqual(tail, upTo1200.slice(200));
    } finally {
      await system.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function chattr(flag: "+i" | "-i", path: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("chattr", { args: [flag, path], stderr: "null" }).output();
    return out.success;
  } catch {
    return false; // no chattr here: spawning throws
  }
}

/**
 * Whether `chattr +i` makes a file in a temp dir unwritable here: it needs the tool, root (or
 * CAP_LINUX_IMMUTABLE) and a file system with the flag. Probed before the test is registered,
 * so that the test is reported as ignored, not passed, where it cannot check anything.
 */
async function immutableFilesWork(): Promise<boolean> {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/probe`;
  try {
    await Deno.writeTextFile(file, "");
    if (!(await chattr("+i", file))) return false;
    try {
      return await Deno.writeTextFile(file, "x").then(() => false, () => true);
    } finally {
      await chattr("-i", file);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "a read-only journal file gives a clear error and the node keeps running",
  // root ignores file modes; an immutable file is read-only even for root
  ignore: !(await immutableFilesWork()),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/ro.db`;
    try {
      const url = `file:${path}`;
      let system = await createSystem({ actors: [Account], journal: url });
      await system.ref(Account, "r").ask("deposit", 1);
      await system.close();
      assert.ok(await chattr("+i", path), "chattr +i worked when probed but not now");
      system = await createSystem({ actors: [Account], journal: url, logger: "silent" });
      try {
        const err = await system.ref(Account, "r").ask("deposit", 1).then(
          () => undefined,
          (e) => e,
        );
        assert.ok(err, "the write is refused");
        assert.equal(err.code, "unavailable");
        assert.match(err.message, /journal|read-only|cannot/i);
      } finally {
        await system.close().catch(() => {});
      }
    } finally {
      await chattr("-i", path);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("libsql store: the background purge removes expired rows from the database", async () => {
  const dir = await Deno.makeTempDir();
  const url = `file:${dir}/purge.db`;
  const journal = libsqlJournal({ url });
  const stores = new Stores({ journal, codec: msgpack, maxPayload: 1 << 20, purgeIntervalMs: 20 });
  const raw = sqlite(url);
  try {
    const s = stores.open("sessions");
    for (let i = 0; i < 5; i++) await s.set(`s${i}`, i, { ttl: 1 });
    await s.set("keep", 1);
    const count = async () =>
      Number((await raw.execute("SELECT count(*) AS n FROM store_records")).rows[0]!.n);
    const deadline = Date.now() + 5_000;
    while ((await count()) > 1) {
      assert.ok(Date.now() < deadline, "expired rows were not purged within 5 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual((await Array.fromAsync(s.list())).map((r) => r.key), ["keep"]);
  } finally {
    raw.close();
    await stores.close();
    await journal.close();
    await Deno.remove(dir, { recursive: true });
  }
});
