import assert from "node:assert/strict";
import { logViolations, sqlite } from "../../tests/_sqlite.ts";
import { type ActorError, UnavailableError } from "../../mod.ts";
import { isOwned, type Journal, journalConformance, type Recovered } from "../../spi.ts";
import { libsqlJournal, type LibsqlJournalOptions, SCHEMA_VERSION } from "./journal.ts";

/** A fresh temp dir, removed with everything in it on dispose (`await using`). */
async function tempDir(): Promise<{ readonly path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "troupe-journal-test-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** `j` with `close()` also running `cleanup` afterwards (once). */
function closing(j: Journal, cleanup: () => PromiseLike<void>): Journal {
  let done: Promise<void> | undefined;
  return new Proxy(j, {
    get(target, prop) {
      if (prop === "close") {
        return () =>
          done ??= (async () => {
            try {
              await target.close();
            } finally {
              await cleanup();
            }
          })();
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** A journal on a file in its own temp dir; closing it removes the dir. */
async function fileJournal(
  options: Omit<LibsqlJournalOptions, "url" | "shards"> = {},
): Promise<Journal> {
  const dir = await tempDir();
  return closing(
    libsqlJournal({ url: `file:${dir.path}/j.db`, ...options }),
    () => dir[Symbol.asyncDispose](),
  );
}

/** A journal on three shard files in a temp dir. */
async function shardedJournal(): Promise<Journal> {
  const dir = await tempDir();
  const shards = [0, 1, 2].map((i) => `file:${dir.path}/s${i}.db`);
  return closing(libsqlJournal({ shards }), () => dir[Symbol.asyncDispose]());
}

journalConformance("libsql file:", () => fileJournal());
journalConformance("libsql :memory:", () => Promise.resolve(libsqlJournal({ url: ":memory:" })));
journalConformance("libsql 3 shards", shardedJournal);
journalConformance("libsql file: in-thread client", () => fileJournal({ worker: false }));

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Activates without a claim (never refused). */
async function recover(j: Journal, actor: string): Promise<Recovered> {
  const r = await j.activate(actor);
  if (isOwned(r)) throw new Error(`activate("${actor}") without a claim was refused`);
  return r;
}

const ev = (text: string) => ({ type: "noted", version: 1, data: enc.encode(text), at: 1 });

Deno.test("libsqlJournal() keeps data across close and reopen, with the schema version recorded", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/reopen.db`;
  const a = libsqlJournal({ url });
  const { epoch } = await recover(a, "t/a");
  await a.append({
    actor: "t/a",
    epoch,
    expectedSeq: 0,
    events: [ev("1"), ev("2")],
    snapshot: { seq: 1, version: 1, state: enc.encode("S1") },
    idempotency: { key: "k", reply: enc.encode("r"), fingerprint: "h" },
    reminders: [{ id: "r1", actor: "t/a", handler: "h", data: enc.encode(""), due: 5 }],
  });
  await a.close();
  const b = libsqlJournal({ url });
  try {
    const rec = await recover(b, "t/a");
    assert.equal(rec.epoch, epoch + 1);
    assert.equal(rec.seq, 2);
    assert.equal(dec.decode(rec.snapshot!.state), "S1");
    assert.deepEqual(rec.events.map((e) => dec.decode(e.data)), ["2"]);
    assert.equal(dec.decode((await b.reply("t/a", "k"))!.reply), "r");
    assert.equal(await b.nextReminder(), 5);
  } finally {
    await b.close();
  }
  const client = sqlite(url);
  try {
    const rs = await client.execute("SELECT value FROM troupe_meta WHERE key = 'schema_version'");
    assert.equal(Number(rs.rows[0]?.value), SCHEMA_VERSION);
    assert.equal(String((await client.execute("PRAGMA journal_mode")).rows[0]?.[0]), "wal");
  } finally {
    client.close();
  }
});

Deno.test("a version 4 file (written before deferred heads) opens as version 5 with its logs as they were", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/v4.db`;
  const a = libsqlJournal({ url });
  const { epoch } = await recover(a, "t/v4");
  await a.append({ actor: "t/v4", epoch, expectedSeq: 0, events: [ev("1"), ev("2")] });
  await a.append({
    actor: "t/v4",
    epoch,
    expectedSeq: 2,
    events: [ev("3")],
    reminders: [{
      id: "r4",
      actor: "t/v4",
      handler: "h",
      data: enc.encode(""),
      due: 7,
      cron: "* * * * *",
    }],
  });
  await a.close();
  // Version 4's tables are version 5's: only the recorded version (and no heads_from) differ.
  const db = sqlite(url);
  try {
    db.execute("UPDATE troupe_meta SET value = 4 WHERE key = 'schema_version'");
  } finally {
    db.close();
  }
  const b = libsqlJournal({ url });
  try {
    const rec = await recover(b, "t/v4");
    assert.equal(rec.seq, 3);
    assert.deepEqual(rec.events.map((e) => dec.decode(e.data)), ["1", "2", "3"]);
    assert.equal(await b.nextReminder(), 7);
    await b.append({ actor: "t/v4", epoch: rec.epoch, expectedSeq: 3, events: [ev("4")] });
  } finally {
    await b.close();
  }
  const after = sqlite(url);
  try {
    const rs = after.execute("SELECT value FROM troupe_meta WHERE key = 'schema_version'");
    assert.equal(Number(rs.rows[0]?.value), SCHEMA_VERSION);
    assert.equal(SCHEMA_VERSION, 5);
  } finally {
    after.close();
  }
  assert.deepEqual(logViolations(url), []);
});

Deno.test("libsqlJournal() refuses a database with a newer schema version", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/newer.db`;
  const setup = libsqlJournal({ url });
  await setup.read("x", 1, 1);
  await setup.close();
  const client = sqlite(url);
  await client.execute("UPDATE troupe_meta SET value = 99 WHERE key = 'schema_version'");
  client.close();
  const j = libsqlJournal({ url });
  await assert.rejects(j.activate("t/a"), (err: ActorError) => {
    assert.equal(err.code, "unavailable");
    assert.match(err.message, /schema version 99/);
    return true;
  });
  await j.close();
});

Deno.test("two libsqlJournal instances on one file: fencing holds, no event lost or duplicated", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/two.db`;
  const [a, b] = [libsqlJournal({ url }), libsqlJournal({ url })];
  try {
    // Many actors, each written by one of the instances, concurrently.
    const work = (j: typeof a, prefix: string) =>
      Promise.all(Array.from({ length: 50 }, async (_, i) => {
        const actor = `${prefix}/${i}`;
        const { epoch } = await recover(j, actor);
        for (let s = 0; s < 20; s++) {
          await j.append({ actor, epoch, expectedSeq: s, events: [ev(`${actor}:${s}`)] });
        }
      }));
    await Promise.all([work(a, "a"), work(b, "b")]);
    for (const prefix of ["a", "b"]) {
      for (let i = 0; i < 50; i++) {
        const events = await a.read(`${prefix}/${i}`, 1, 100);
        assert.deepEqual(
          events.map((e) => dec.decode(e.data)),
          Array.from({ length: 20 }, (_, s) => `${prefix}/${i}:${s}`),
        );
      }
    }
    // One actor, activated by a then by b: a is fenced.
    const ra = await recover(a, "shared/1");
    await a.append({ actor: "shared/1", epoch: ra.epoch, expectedSeq: 0, events: [ev("a1")] });
    const rb = await recover(b, "shared/1");
    assert.equal(rb.seq, 1);
    await assert.rejects(
      a.append({ actor: "shared/1", epoch: ra.epoch, expectedSeq: 1, events: [ev("a2")] }),
      (err: ActorError) => err.code === "conflict" && /stale/.test(err.message),
    );
    await b.append({ actor: "shared/1", epoch: rb.epoch, expectedSeq: 1, events: [ev("b2")] });
    assert.deepEqual((await a.read("shared/1", 1, 10)).map((e) => [e.seq, dec.decode(e.data)]), [[
      1,
      "a1",
    ], [2, "b2"]]);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("deferred heads: rows lag while one writer appends, and a reader, another writer or a crash copy sees every event", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/heads.db`;
  const a = libsqlJournal({ url });
  let b: Journal | undefined;
  let c: Journal | undefined;
  try {
    const actors = Array.from({ length: 40 }, (_, i) => `h/${i}`);
    const epochs = new Map<string, number>();
    for (const actor of actors) epochs.set(actor, (await recover(a, actor)).epoch);
    // Five rounds of one event per actor, each round a group commit of the 40 (made in one
    // turn of the event loop).
    const round = (s: number) =>
      Promise.all(
        actors.map((actor) =>
          a.append({
            actor,
            epoch: epochs.get(actor)!,
            expectedSeq: s,
            events: [ev(`${actor}:${s}`)],
          })
        ),
      );
    await round(0);
    const db = sqlite(url);
    try {
      // The first commit after the claims defers its heads (writing them is due only once
      // some have lagged a while): the rows lag, and the mark says from where.
      assert.equal(
        db.execute("SELECT count(*) FROM activations WHERE actor LIKE 'h/%' AND seq = 0")
          .rows[0]![0],
        40,
      );
      assert.equal(
        db.execute("SELECT count(*) FROM troupe_meta WHERE key = 'heads_from'").rows[0]![0],
        1,
      );
    } finally {
      db.close();
    }
    for (let s = 1; s < 5; s++) await round(s);
    assert.deepEqual(logViolations(url), []);
    // A crash now (a copy of the files as they are) keeps every event: a journal opened on
    // the copy reads and recovers them all.
    await Deno.copyFile(`${tmp.path}/heads.db`, `${tmp.path}/crash.db`);
    await Deno.copyFile(`${tmp.path}/heads.db-wal`, `${tmp.path}/crash.db-wal`);
    c = libsqlJournal({ url: `file:${tmp.path}/crash.db` });
    assert.deepEqual((await c.read("h/3", 1, 10)).map((e) => dec.decode(e.data)), [
      "h/3:0",
      "h/3:1",
      "h/3:2",
      "h/3:3",
      "h/3:4",
    ]);
    const crashed = await recover(c, "h/7");
    assert.equal(crashed.seq, 5);
    assert.equal(crashed.events.length, 5);
    await c.append({ actor: "h/7", epoch: crashed.epoch, expectedSeq: 5, events: [ev("after")] });
    assert.equal((await c.read("h/7", 6, 1))[0]?.seq, 6);
    // Another writer on the live file: reads see the lagging heads' events; its takeover sees
    // the whole log and fences the first writer, whose cache goes with the other's commit.
    b = libsqlJournal({ url });
    assert.equal((await b.read("h/1", 1, 10)).length, 5);
    const taken = await recover(b, "h/1");
    assert.equal(taken.seq, 5);
    assert.deepEqual(taken.events.map((e) => e.seq), [1, 2, 3, 4, 5]);
    await assert.rejects(
      a.append({ actor: "h/1", epoch: epochs.get("h/1")!, expectedSeq: 5, events: [ev("late")] }),
      (err: ActorError) => err.code === "conflict" && /stale/.test(err.message),
    );
    await b.append({ actor: "h/1", epoch: taken.epoch, expectedSeq: 5, events: [ev("b")] });
    // The first writer goes on with its other actors, after the other's commits.
    await a.append({ actor: "h/2", epoch: epochs.get("h/2")!, expectedSeq: 5, events: [ev("a")] });
    await assert.rejects(
      a.append({ actor: "h/2", epoch: epochs.get("h/2")!, expectedSeq: 5, events: [ev("again")] }),
      (err: ActorError) => err.code === "conflict" && /log ends at 6/.test(err.message),
    );
  } finally {
    await a.close();
    await b?.close();
    await c?.close();
  }
  // At rest every head is in its row.
  const db = sqlite(url);
  try {
    assert.equal(
      db.execute("SELECT count(*) FROM troupe_meta WHERE key = 'heads_from'").rows[0]![0],
      0,
    );
    assert.deepEqual(
      db.execute("SELECT actor, seq FROM activations WHERE actor IN ('h/1', 'h/2', 'h/3')")
        .rows.map((r) => [r[0], r[1]]),
      [["h/1", 6], ["h/2", 6], ["h/3", 5]],
    );
  } finally {
    db.close();
  }
  assert.deepEqual(logViolations(url), []);
  assert.deepEqual(logViolations(`file:${tmp.path}/crash.db`), []);
});

const WORKER = `
import { libsqlJournal } from ${JSON.stringify(new URL("./journal.ts", import.meta.url).href)};
const [url, prefix, rounds] = Deno.args;
const j = libsqlJournal({ url, busyTimeoutMs: 20000 });
const enc = new TextEncoder();
const ev = (t) => ({ type: "noted", version: 1, data: enc.encode(t), at: 1 });
const mine = [];
// Own actors, concurrently.
const own = Promise.all(Array.from({ length: 20 }, async (_, i) => {
  const actor = prefix + "/" + i;
  const { epoch } = await j.activate(actor);
  for (let s = 0; s < 30; s++) await j.append({ actor, epoch, expectedSeq: s, events: [ev(actor + ":" + s)] });
}));
// One contended actor: activate, then append at the head; fenced appends fail.
let ok = 0, conflicts = 0;
for (let r = 0; r < Number(rounds); r++) {
  const rec = await j.activate("contended/1");
  await new Promise((res) => setTimeout(res, Math.random() * 3));
  try {
    await j.append({ actor: "contended/1", epoch: rec.epoch, expectedSeq: rec.seq, events: [ev(prefix + ":" + r)] });
    ok++; mine.push(prefix + ":" + r);
  } catch (err) {
    if (err.code !== "conflict") throw err;
    conflicts++;
  }
}
await own;
await j.close();
console.log(JSON.stringify({ ok, conflicts, mine }));
`;

Deno.test("a second process appends to the same file concurrently: no loss, no duplicate, fencing holds", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/procs.db`;
  const script = `${tmp.path}/worker.js`;
  await Deno.writeTextFile(script, WORKER);
  const config = new URL("../../deno.json", import.meta.url).pathname;
  const run = (prefix: string) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", config, script, url, prefix, "60"],
      stdout: "piped",
      stderr: "piped",
    }).output();
  const outs = await Promise.all([run("p1"), run("p2")]);
  const results = outs.map((o) => {
    assert.equal(o.code, 0, dec.decode(o.stderr));
    return JSON.parse(dec.decode(o.stdout).trim().split("\n").pop()!) as {
      ok: number;
      conflicts: number;
      mine: string[];
    };
  });
  const j = libsqlJournal({ url });
  try {
    for (const prefix of ["p1", "p2"]) {
      for (let i = 0; i < 20; i++) {
        const events = await j.read(`${prefix}/${i}`, 1, 100);
        assert.deepEqual(
          events.map((e) => dec.decode(e.data)),
          Array.from({ length: 30 }, (_, s) => `${prefix}/${i}:${s}`),
        );
      }
    }
    const log = await j.read("contended/1", 1, 1000);
    // Exactly the acknowledged appends, each once, seq 1..n without gaps.
    assert.deepEqual(log.map((e) => e.seq), Array.from({ length: log.length }, (_, i) => i + 1));
    assert.deepEqual(
      log.map((e) => dec.decode(e.data)).sort(),
      results.flatMap((r) => r.mine).sort(),
    );
    assert.equal(log.length, results[0]!.ok + results[1]!.ok);
    assert.deepEqual(logViolations(url), []);
  } finally {
    await j.close();
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
  await using dir = await tempDir();
  const file = `${dir.path}/probe`;
  await Deno.writeTextFile(file, "");
  if (!(await chattr("+i", file))) return false;
  try {
    return await Deno.writeTextFile(file, "x").then(() => false, () => true);
  } finally {
    await chattr("-i", file);
  }
}

Deno.test({
  name: "a read-only database file gives a clear unavailable error",
  // Tests run as root, where chmod 0444 does not stop writes: the file is made immutable
  // (chattr +i, which binds root too), so SQLite can only open it read-only.
  ignore: !(await immutableFilesWork()),
  fn: async () => {
    await using tmp = await tempDir();
    const path = `${tmp.path}/ro.db`;
    const url = `file:${path}`;
    const setup = libsqlJournal({ url });
    await recover(setup, "t/a");
    await setup.close();
    assert.ok(await chattr("+i", path), "chattr +i worked when probed but not now");
    try {
      const j = libsqlJournal({ url, openTimeoutMs: 200 });
      const err = await recover(j, "t/a").then(() => undefined, (e: ActorError) => e);
      assert.ok(err instanceof UnavailableError, `expected unavailable, got ${err}`);
      assert.match(err.message, /read-only|cannot be opened/);
      assert.match(err.message, /ro\.db/);
      await j.close();
    } finally {
      await chattr("-i", path);
    }
  },
});

Deno.test("a lock held by another connection fails appends with unavailable after the busy timeout, then the journal recovers", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/locked.db`;
  const j = libsqlJournal({ url, busyTimeoutMs: 200 });
  const other = sqlite(url);
  try {
    const { epoch } = await recover(j, "t/a");
    await j.append({ actor: "t/a", epoch, expectedSeq: 0, events: [ev("1")] });
    // The other client holds the write lock (BEGIN IMMEDIATE plus a write; in WAL mode this
    // is what BEGIN EXCLUSIVE holds against writers) until it rolls back.
    const tx = other.transaction();
    await tx.execute("INSERT INTO troupe_meta (key, value) VALUES ('lock-test', 1)");
    const t0 = performance.now();
    await assert.rejects(
      j.append({ actor: "t/a", epoch, expectedSeq: 1, events: [ev("2")] }),
      (err: ActorError) => {
        assert.ok(err instanceof UnavailableError);
        assert.match(err.message, /locked/);
        assert.match(err.message, /locked\.db/);
        return true;
      },
    );
    assert.ok(performance.now() - t0 >= 150, "it waited for the busy timeout");
    tx.rollback();
    await j.append({ actor: "t/a", epoch, expectedSeq: 1, events: [ev("2")] });
    assert.deepEqual((await j.read("t/a", 1, 10)).map((e) => dec.decode(e.data)), ["1", "2"]);
  } finally {
    other.close();
    await j.close();
  }
});

/**
 * A child process that takes the write lock of each database in `urls` (BEGIN IMMEDIATE plus
 * a write, after switching it to WAL mode), says "locked" on stdout and holds them until it
 * is killed. Killed (SIGKILL) and awaited on dispose.
 */
async function lockHolder(
  dir: string,
  urls: readonly string[],
): Promise<{ readonly child: Deno.ChildProcess } & AsyncDisposable> {
  const script = `${dir}/locker.js`;
  await Deno.writeTextFile(script, LOCKER);
  const config = new URL("../../deno.json", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", config, script, ...urls],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const dispose = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await reader.cancel().catch(() => {});
    await child.status;
  };
  // Bounded: the child says "locked" once it holds the locks, or exits, or is killed.
  const slow = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, 30_000);
  try {
    let out = "";
    while (!out.includes("locked")) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`the lock holder exited before taking the locks: ${out}`);
      out += dec.decode(chunk.value);
    }
  } catch (err) {
    await dispose();
    throw err;
  } finally {
    clearTimeout(slow);
  }
  return { child, [Symbol.asyncDispose]: dispose };
}

const LOCKER = `
import { createClient } from "@libsql/client/node";
for (const url of Deno.args) {
  const c = createClient({ url });
  await c.execute("PRAGMA journal_mode = WAL");
  await c.execute("CREATE TABLE IF NOT EXISTS locker (x)");
  const tx = await c.transaction("write");
  await tx.execute("INSERT INTO locker VALUES (1)");
}
console.log("locked");
setInterval(() => {}, 60_000); // hold until killed
`;

/** Measures the longest gap between ticks of a 10 ms interval while `fn` runs. */
async function maxStall<T>(fn: () => Promise<T>): Promise<{ result: T; stallMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 10);
  try {
    const result = await fn();
    stallMs = Math.max(stallMs, performance.now() - last);
    return { result, stallMs };
  } finally {
    clearInterval(timer);
  }
}

Deno.test("a write lock held by a paused process stalls neither the event loop nor opening, and takeover goes on once it dies", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/paused.db`;
  // A database the paused process locked before any journal gave it its schema.
  const fresh = `file:${tmp.path}/fresh.db`;
  const j = libsqlJournal({ url, busyTimeoutMs: 800 });
  const k = libsqlJournal({ url: fresh, openTimeoutMs: 800 });
  try {
    const { epoch } = await recover(j, "t/a");
    await j.append({ actor: "t/a", epoch, expectedSeq: 0, events: [ev("1")] });
    await using holder = await lockHolder(tmp.path, [url, fresh]);
    holder.child.kill("SIGSTOP"); // paused while it holds both write locks
    // Past their bounds, an append and an open (schema creation) fail with a typed error;
    // the event loop kept running meanwhile.
    const t0 = performance.now();
    const failed = await maxStall(() =>
      Promise.all([
        j.append({ actor: "t/a", epoch, expectedSeq: 1, events: [ev("2")] }).then(
          () => undefined,
          (err: unknown) => err,
        ),
        k.activate("t/b").then(() => undefined, (err: unknown) => err),
      ])
    );
    const waited = performance.now() - t0;
    const [append, open] = failed.result;
    assert.ok(append instanceof UnavailableError, `expected unavailable: ${append}`);
    assert.match(append.message, /locked/);
    assert.ok(open instanceof UnavailableError, `expected unavailable: ${open}`);
    assert.match(open.message, /locked/);
    assert.ok(waited >= 700, `they waited for their bounds (${waited.toFixed(0)} ms)`);
    assert.ok(failed.stallMs < 250, `the event loop stalled ${failed.stallMs.toFixed(0)} ms`);
    // Calls waiting when the paused process dies go through, without stalling either.
    const kill = setTimeout(() => holder.child.kill("SIGKILL"), 400);
    try {
      const ok = await maxStall(() =>
        Promise.all([
          j.append({ actor: "t/a", epoch, expectedSeq: 1, events: [ev("2")] }),
          k.activate("t/b"),
        ])
      );
      assert.ok(ok.stallMs < 250, `the event loop stalled ${ok.stallMs.toFixed(0)} ms`);
      assert.equal(ok.result[1].epoch, 1);
    } finally {
      clearTimeout(kill);
    }
    assert.deepEqual((await j.read("t/a", 1, 10)).map((e) => dec.decode(e.data)), ["1", "2"]);
  } finally {
    await j.close();
    await k.close();
  }
});

Deno.test("idempotency records are pruned to maxPerActor and maxAgeMs", async () => {
  const j = libsqlJournal({ url: ":memory:", retention: { maxAgeMs: 60_000, maxPerActor: 3 } });
  try {
    const { epoch } = await recover(j, "t/a");
    for (let i = 1; i <= 5; i++) {
      await j.append({
        actor: "t/a",
        epoch,
        expectedSeq: 0,
        events: [],
        idempotency: { key: `k${i}`, reply: enc.encode(`r${i}`), fingerprint: "h" },
      });
    }
    // Records stored in the same millisecond are ordered by key, which here is their order.
    await j.pruneIdempotency();
    assert.equal(await j.reply("t/a", "k2"), undefined);
    assert.equal(dec.decode((await j.reply("t/a", "k3"))!.reply), "r3");
    assert.equal(dec.decode((await j.reply("t/a", "k5"))!.reply), "r5");
    await j.pruneIdempotency(Date.now() + 120_000);
    assert.equal(await j.reply("t/a", "k5"), undefined);
  } finally {
    await j.close();
  }
});

Deno.test("a group commit with stale, unexpected, unactivated and key-conflicting appends rejects only those, writing nothing of theirs", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/mixed.db`;
  const j = libsqlJournal({ url });
  try {
    const actors = Array.from({ length: 60 }, (_, i) => `t/m${i}`);
    const epochs = await Promise.all(actors.map(async (a) => (await recover(j, a)).epoch));
    // t/m1: activated again, so epochs[1] is stale. t/m3: the mark of its 32nd event already
    // stored (written behind the journal's back), so its append of 32 events hits a key and
    // fails the whole transaction: every append is then tried alone.
    await recover(j, "t/m1");
    const other = sqlite(url);
    await other.execute(
      "INSERT INTO event_marks (actor, seq, pos) SELECT id, 32, 999999 FROM activations WHERE actor = 't/m3'",
    );
    other.close();
    const bad = new Set(["t/m1", "t/m2", "t/m3", "t/never"]);
    const all = [...actors, "t/never"];
    const results = await Promise.allSettled(all.map((actor, i) =>
      j.append({
        actor,
        epoch: epochs[i] ?? 1,
        expectedSeq: actor === "t/m2" ? 5 : 0,
        events: actor === "t/m3"
          ? Array.from({ length: 32 }, (_, k) => ev(`${actor}#${k + 1}`))
          : [ev(`${actor}#1`), ev(`${actor}#2`)],
        snapshot: { seq: 1, version: 1, state: enc.encode(actor) },
        idempotency: { key: "k", reply: enc.encode(actor), fingerprint: "h" },
        reminders: [{ id: `r-${actor}`, actor, handler: "h", data: enc.encode(""), due: 1 }],
      })
    ));
    results.forEach((r, i) => {
      if (bad.has(all[i]!)) {
        assert.equal(r.status, "rejected", `append to ${all[i]} should fail`);
        assert.equal((r as PromiseRejectedResult).reason.code, "conflict");
      } else assert.equal(r.status, "fulfilled", `append to ${all[i]} failed`);
    });
    const due = new Set((await j.dueReminders(10, 1000)).map((r) => r.id));
    for (const actor of all) {
      const texts = (await j.read(actor, 1, 10)).map((e) => dec.decode(e.data));
      assert.deepEqual(texts, bad.has(actor) ? [] : [`${actor}#1`, `${actor}#2`]);
      assert.equal(await j.reply(actor, "k") !== undefined, !bad.has(actor));
      assert.equal(due.has(`r-${actor}`), !bad.has(actor));
    }
    // The good ones chain on in the next commits, so does t/m3 (no 32nd event now); the stale
    // one stays fenced.
    const next = await Promise.allSettled(actors.map((actor, i) =>
      j.append({
        actor,
        epoch: epochs[i]!,
        expectedSeq: bad.has(actor) ? 0 : 2,
        events: [ev(`${actor}#3`)],
      })
    ));
    next.forEach((r, i) => {
      const actor = actors[i]!;
      if (actor === "t/m1") assert.equal(r.status, "rejected", actor);
      else assert.equal(r.status, "fulfilled", actor);
    });
    const rec = await recover(j, "t/m0");
    assert.equal(rec.seq, 3);
    assert.deepEqual(rec.events.map((e) => dec.decode(e.data)), ["t/m0#2", "t/m0#3"]);
  } finally {
    await j.close();
  }
});

Deno.test("a group commit larger than one INSERT's parameter limit writes every event", async () => {
  const j = libsqlJournal({ url: ":memory:" });
  try {
    const actors = Array.from({ length: 1500 }, (_, i) => `t/big${i}`);
    const epochs = await Promise.all(actors.map(async (a) => (await recover(j, a)).epoch));
    // 1500 appends × 4 events = 6000 rows: more than 32766 parameters at 6 per row.
    await Promise.all(actors.map((actor, i) =>
      j.append({
        actor,
        epoch: epochs[i]!,
        expectedSeq: 0,
        events: [ev("a"), ev("b"), ev("c"), ev("d")],
      })
    ));
    for (const actor of [actors[0]!, actors[777]!, actors[1499]!]) {
      assert.deepEqual((await j.read(actor, 1, 10)).map((e) => dec.decode(e.data)), [
        "a",
        "b",
        "c",
        "d",
      ]);
    }
    assert.equal((await recover(j, actors[1499]!)).seq, 4);
  } finally {
    await j.close();
  }
});

Deno.test("a schema version 1 file is migrated to version 3: owners, commit order and the logs as they were", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/v1.db`;
  const client = sqlite(url);
  try {
    // The version 1 schema and a row of each kind, as version 1 wrote them.
    await client.batch([
      "CREATE TABLE troupe_meta (key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID",
      `CREATE TABLE events (actor TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
        version INTEGER NOT NULL, data BLOB NOT NULL, at INTEGER NOT NULL,
        PRIMARY KEY (actor, seq)) WITHOUT ROWID`,
      `CREATE TABLE snapshots (actor TEXT PRIMARY KEY, seq INTEGER NOT NULL,
        version INTEGER NOT NULL, state BLOB NOT NULL)`,
      `CREATE TABLE activations (actor TEXT PRIMARY KEY, epoch INTEGER NOT NULL,
        seq INTEGER NOT NULL) WITHOUT ROWID`,
      `CREATE TABLE idempotency (actor TEXT NOT NULL, key TEXT NOT NULL, reply BLOB NOT NULL,
        at INTEGER NOT NULL, PRIMARY KEY (actor, key)) WITHOUT ROWID`,
      `CREATE TABLE reminders (id TEXT PRIMARY KEY, actor TEXT NOT NULL, handler TEXT NOT NULL,
        data BLOB NOT NULL, due INTEGER NOT NULL)`,
      "INSERT INTO troupe_meta VALUES ('schema_version', 1)",
      "INSERT INTO activations VALUES ('t/a', 3, 1)",
      { sql: "INSERT INTO events VALUES ('t/a', 1, 'noted', 1, ?, 1)", args: [enc.encode("old")] },
      // Another actor with 40 events (past a mark) and a reply.
      "INSERT INTO activations VALUES ('t/long', 2, 40)",
      ...Array.from({ length: 40 }, (_, i) => ({
        sql: "INSERT INTO events VALUES ('t/long', ?, 'noted', 1, ?, 1)",
        args: [i + 1, enc.encode(`L${i + 1}`)],
      })),
      {
        sql: "INSERT INTO idempotency VALUES ('t/long', 'k', ?, 1)",
        args: [enc.encode("stored")],
      },
    ]);
  } finally {
    client.close();
  }
  // Two journals open (and migrate) it at once.
  const [a, b] = [libsqlJournal({ url }), libsqlJournal({ url })];
  try {
    const [ra, rb] = await Promise.all([
      a.activate("t/a", { node: "n1" }),
      b.activate("t/a", { node: "n2" }),
    ]);
    assert.equal([ra, rb].filter((r) => !isOwned(r)).length, 1, "exactly one claim wins");
    const won = (isOwned(ra) ? rb : ra) as Recovered;
    assert.equal(won.epoch, 4);
    assert.equal(won.seq, 1);
    assert.deepEqual(won.events.map((e) => dec.decode(e.data)), ["old"]);
    assert.deepEqual(await a.owner("t/a"), { owner: isOwned(ra) ? "n2" : "n1", epoch: 4 });
    // The long log reads back whole and from any seq, and goes on at seq 41.
    const texts = (events: readonly { data: Uint8Array }[]) =>
      events.map((e) => dec.decode(e.data));
    const all = Array.from({ length: 40 }, (_, i) => `L${i + 1}`);
    assert.deepEqual(texts(await a.read("t/long", 1, 100)), all);
    assert.deepEqual(texts(await a.read("t/long", 30, 5)), all.slice(29, 34));
    const long = await recover(a, "t/long");
    assert.equal(long.seq, 40);
    assert.deepEqual(texts(long.events), all);
    await a.append({ actor: "t/long", epoch: long.epoch, expectedSeq: 40, events: [ev("L41")] });
    assert.deepEqual(texts(await a.read("t/long", 39, 10)), ["L39", "L40", "L41"]);
    // A reply stored before fingerprints has none.
    assert.deepEqual(await a.reply("t/long", "k"), { reply: enc.encode("stored") });
    // Commit order: the migrated events first (by actor, then seq), then the new one.
    const feed = await a.readCommitted(0, 0, 1000);
    assert.deepEqual(feed.map((e) => `${e.actor}#${e.seq}`), [
      "t/a#1",
      ...all.map((_, i) => `t/long#${i + 1}`),
      "t/long#41",
    ]);
  } finally {
    await a.close();
    await b.close();
  }
  const check = sqlite(url);
  try {
    const rs = await check.execute("SELECT value FROM troupe_meta WHERE key = 'schema_version'");
    assert.equal(Number(rs.rows[0]?.value), SCHEMA_VERSION);
  } finally {
    check.close();
  }
});

const CLAIMER = `
import { libsqlJournal } from ${JSON.stringify(new URL("./journal.ts", import.meta.url).href)};
const [url, node, count] = Deno.args;
const j = libsqlJournal({ url, busyTimeoutMs: 20000 });
const won = [];
await Promise.all(Array.from({ length: Number(count) }, async (_, i) => {
  const r = await j.activate("claimed/" + i, { node });
  if (!("owner" in r)) won.push([i, r.epoch]);
}));
await j.close();
console.log(JSON.stringify(won));
`;

Deno.test("three processes claim the same actors on one file: each actor has exactly one owner", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/claims.db`;
  const script = `${tmp.path}/claimer.js`;
  await Deno.writeTextFile(script, CLAIMER);
  const config = new URL("../../deno.json", import.meta.url).pathname;
  const nodes = ["p1", "p2", "p3"];
  const count = 200;
  const outs = await Promise.all(nodes.map((node) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", config, script, url, node, String(count)],
      stdout: "piped",
      stderr: "piped",
    }).output()
  ));
  const owners = new Map<number, { node: string; epoch: number }>();
  outs.forEach((o, n) => {
    assert.equal(o.code, 0, dec.decode(o.stderr));
    const won = JSON.parse(dec.decode(o.stdout).trim().split("\n").pop()!) as [number, number][];
    for (const [i, epoch] of won) {
      assert.equal(owners.get(i), undefined, `actor ${i} won twice`);
      owners.set(i, { node: nodes[n]!, epoch });
    }
  });
  assert.equal(owners.size, count, "every actor has an owner");
  const j = libsqlJournal({ url });
  try {
    for (const [i, { node, epoch }] of owners) {
      assert.deepEqual(await j.owner(`claimed/${i}`), { owner: node, epoch });
    }
  } finally {
    await j.close();
  }
});

Deno.test("shards: each actor's log, snapshot, reply and reminders in exactly one shard; reopening reads all back", async () => {
  await using tmp = await tempDir();
  const shards = [0, 1, 2].map((i) => `file:${tmp.path}/s${i}.db`);
  const actors = Array.from({ length: 60 }, (_, i) => `t/a${i}`);
  const a = libsqlJournal({ shards });
  try {
    assert.equal(a.shards, 3);
    const epochs = await Promise.all(actors.map(async (x) => (await recover(a, x)).epoch));
    await Promise.all(actors.map((actor, i) =>
      a.append({
        actor,
        epoch: epochs[i]!,
        expectedSeq: 0,
        events: [ev(`${actor}:1`), ev(`${actor}:2`)],
        snapshot: { seq: 1, version: 1, state: enc.encode(actor) },
        idempotency: { key: "k", reply: enc.encode(actor), fingerprint: "h" },
        reminders: [{ id: `r-${actor}`, actor, handler: "h", data: enc.encode(""), due: 5 }],
      })
    ));
    // Every shard got some actors.
    assert.deepEqual(new Set(actors.map((x) => a.shardOf(x))), new Set([0, 1, 2]));
  } finally {
    await a.close();
  }
  // In the files: each actor's rows in its shard only.
  const where = new Map<string, Set<number>>();
  for (const [i, url] of shards.entries()) {
    const raw = sqlite(url);
    try {
      for (const table of ["activations", "snapshots", "idempotency", "reminders"]) {
        const rows = (await raw.execute(`SELECT actor FROM ${table}`)).rows;
        for (const r of rows) {
          const key = `${table}:${r.actor}`;
          where.set(key, (where.get(key) ?? new Set()).add(i));
        }
      }
      const events = (await raw.execute(
        "SELECT a.actor FROM events AS e JOIN activations AS a ON a.id = e.actor",
      )).rows;
      for (const r of events) {
        const key = `events:${r.actor}`;
        where.set(key, (where.get(key) ?? new Set()).add(i));
      }
      const meta = (await raw.execute(
        "SELECT key, value FROM troupe_meta WHERE key IN ('shard_count', 'shard_index') ORDER BY key",
      )).rows.map((r) => [r.key, Number(r.value)]);
      assert.deepEqual(meta, [["shard_count", 3], ["shard_index", i]]);
    } finally {
      raw.close();
    }
  }
  const b = libsqlJournal({ shards });
  try {
    for (const actor of actors) {
      const shard = b.shardOf(actor);
      for (const table of ["activations", "events", "snapshots", "idempotency", "reminders"]) {
        assert.deepEqual(where.get(`${table}:${actor}`), new Set([shard]), `${table} of ${actor}`);
      }
      const rec = await recover(b, actor);
      assert.equal(rec.seq, 2);
      assert.deepEqual(rec.events.map((e) => dec.decode(e.data)), [`${actor}:2`]);
      assert.equal(dec.decode((await b.reply(actor, "k"))!.reply), actor);
    }
    const due = await b.dueReminders(10, 1000);
    assert.deepEqual(due.map((r) => r.id).sort(), actors.map((x) => `r-${x}`).sort());
    assert.equal(await b.nextReminder(), 5);
    // Deleting through the journal finds each reminder's shard.
    for (const r of due) await b.deleteReminder(r.id);
    assert.equal(await b.nextReminder(), undefined);
    let count = 0;
    for (let s = 0; s < 3; s++) count += (await b.readCommitted(s, 0, 1000)).length;
    assert.equal(count, actors.length * 2, "every event once across the shards");
  } finally {
    await b.close();
  }
});

Deno.test("shards: opening with another count or order is refused with a clear error", async () => {
  await using tmp = await tempDir();
  const shards = [0, 1, 2].map((i) => `file:${tmp.path}/s${i}.db`);
  const j = libsqlJournal({ shards });
  await recover(j, "t/a");
  await j.close();
  const refused = async (options: LibsqlJournalOptions, pattern: RegExp) => {
    const k = libsqlJournal(options);
    try {
      await assert.rejects(recover(k, "t/a"), (err: ActorError) => {
        assert.equal(err.code, "unavailable");
        assert.match(err.message, pattern);
        return true;
      });
    } finally {
      await k.close();
    }
  };
  // Two of the three: each database says it is one of 3.
  await refused(
    { shards: shards.slice(0, 2) },
    /is shard \d of 3 shards, but was opened as shard \d of 2/,
  );
  // Four: the three say 3, the new one would be fine alone.
  await refused(
    { shards: [...shards, `file:${tmp.path}/s3.db`] },
    /is shard \d of 3 shards, but was opened as shard \d of 4/,
  );
  // The same three in another order.
  await refused(
    { shards: [shards[1]!, shards[0]!, shards[2]!] },
    /same shard URLs, in the same order/,
  );
  // One of them alone, as a journal without shards.
  await refused({ url: shards[0]! }, /is shard 0 of 3 shards, but was opened as shard 0 of 1/);
  // And the right way still opens.
  const ok = libsqlJournal({ shards });
  try {
    assert.equal((await recover(ok, "t/a")).epoch, 2);
  } finally {
    await ok.close();
  }
  assert.throws(() => libsqlJournal({ shards: [shards[0]!, shards[0]!] }), TypeError);
  assert.throws(() => libsqlJournal({ url: shards[0]!, shards }), TypeError);
});

Deno.test("checkpoints run beside the writes: the database file takes the log while the WAL stays bounded", async () => {
  await using tmp = await tempDir();
  const path = `${tmp.path}/ckpt.db`;
  const j = libsqlJournal({ url: `file:${path}`, synchronous: "normal" });
  try {
    const actors = Array.from({ length: 200 }, (_, i) => `t/c${i}`);
    const epochs = await Promise.all(actors.map(async (a) => (await recover(j, a)).epoch));
    const data = new Uint8Array(200).fill(9);
    const start = (await Deno.stat(path)).size;
    // About 8 MB of events in many commits, over at least a few checkpoint intervals.
    for (let round = 0; round < 200; round++) {
      await Promise.all(actors.map((actor, i) =>
        j.append({
          actor,
          epoch: epochs[i]!,
          expectedSeq: round,
          events: [{ type: "x", version: 1, data, at: 1 }],
        })
      ));
    }
    const db = (await Deno.stat(path)).size;
    const wal = (await Deno.stat(`${path}-wal`)).size;
    // The writer never checkpoints (wal_autocheckpoint = 0): the database file grew because
    // the checkpoint thread copied the log into it meanwhile.
    assert.ok(db > start + 4_000_000, `the database file grew by ${db - start} bytes`);
    assert.ok(wal < 64 * 1024 * 1024, `the WAL is ${wal} bytes`);
    assert.equal((await j.read("t/c7", 200, 1)).length, 1);
  } finally {
    await j.close();
  }
});

Deno.test("actor keys and event types beyond ASCII, short and long, are written and read back as they were", async () => {
  await using tmp = await tempDir();
  const j = libsqlJournal({ url: `file:${tmp.path}/names.db` });
  try {
    const long = `ledger/${"ß".repeat(40)}-${"x".repeat(80)}`; // over 64 bytes, not ASCII
    const actors = ["account/zoë", "计数器/一", "ledger/plain", long];
    const types = ["noted", "déposé", "🧾", "t".repeat(70)];
    for (const actor of actors) {
      const { epoch } = await recover(j, actor);
      await j.append({
        actor,
        epoch,
        expectedSeq: 0,
        events: types.map((type, i) => ({ type, version: 1, data: enc.encode(`${i}`), at: i })),
      });
    }
    for (const actor of actors) {
      const events = await j.read(actor, 1, 10);
      assert.deepEqual(
        events.map((e) => [e.type, dec.decode(e.data)]),
        types.map((t, i) => [t, `${i}`]),
      );
      const again = await recover(j, actor);
      assert.equal(again.seq, types.length, actor);
    }
  } finally {
    await j.close();
  }
});
