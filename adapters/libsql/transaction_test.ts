/**
 * A group commit's transaction is whole or nothing, and each caller gets its own outcome.
 *
 * - The database thread of a local shard (`_worker.ts`, reached through `_connection.ts`): a
 *   write transaction is the connection's alone until it ends. Reads are served between
 *   writes, never inside one: the thread gets messages between the steps of a batch's
 *   transaction (Deno dispatches a waiting message between two microtasks), and a read that
 *   began, failed or rolled back on the writer's connection used to end the batch's
 *   transaction there, so the rest of the batch ran outside any transaction, each statement
 *   committed on its own, and the batch failed with "cannot commit - no transaction is active".
 * - A statement that fails in the middle of a batch's transaction (injected here by a trigger
 *   that rolls the transaction back): a busy database retries and then refuses the batch as a
 *   whole (`unavailable`), any other failure fails only the item it belongs to.
 */
import assert from "node:assert/strict";
import { connect } from "./_connection.ts";
import { nativeExecutor } from "./_native.ts";
import { Engine, GROUP_WRITTEN, type WriteBatch } from "./_engine.ts";
import { type AppendGroup, readStatement } from "./_sql.ts";
import { encodeAppendLists } from "./_wire.ts";
import { logViolations, sqlite } from "../../tests/_sqlite.ts";
import { libsqlJournal } from "./journal.ts";
import { InternalError, UnavailableError } from "../../mod.ts";
import { isOwned, type Journal, type Recovered, type StoreBackend } from "../../spi.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function tempDir(): Promise<{ readonly path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "troupe-worker-test-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/**
 * A read that keeps the database thread busy (a few hundred ms of SQLite work, without
 * locks), so that what is sent meanwhile is waiting there when it is done.
 */
const SLOW_READ = {
  sql: `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000)
        SELECT count(*) FROM c`,
  args: [],
};

/** A promise's outcome, never rejecting (so that it can be awaited later). */
function settled<T>(
  p: Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error) => ({ ok: false as const, error }),
  );
}

const ev = (text: string) => ({ type: "noted", version: 1, data: enc.encode(text), at: 1 });

function batch(parts: Partial<Omit<WriteBatch, "groups">> & { groups?: AppendGroup[][] }) {
  return {
    groups: encodeAppendLists(
      (parts.groups ?? []).map((g) =>
        g.map((a) => ({
          actor: a.actor,
          epoch: a.epoch,
          expectedSeq: a.expectedSeq,
          events: a.events,
          ...(a.snapshot ? { snapshot: a.snapshot } : {}),
          ...(a.idempotency[0] ? { idempotency: a.idempotency[0] } : {}),
          reminders: a.reminders,
        }))
      ),
    ),
    releases: parts.releases ?? [],
    activations: parts.activations ?? [],
    deletes: parts.deletes ?? [],
    custom: parts.custom ?? [],
    now: Date.now(),
  } satisfies WriteBatch;
}

Deno.test("reads sent while a batch commits never run inside its transaction: the batch commits whole, each read gets its own answer", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/w.db`;
  const conn = connect({ url, busyTimeoutMs: 5000, synchronous: "full", openTimeoutMs: 5000 });
  try {
    const actors = ["t/a", "t/b", "t/c"];
    const claimed = await conn.batch(
      batch({ activations: actors.map((actor) => ({ actor, node: "n1" })) }),
      5000,
    );
    const epochs = claimed.activations.map((r) => {
      assert.ok(r.ok && r.value.won, JSON.stringify(r));
      return r.value.epoch;
    });

    // The thread is busy with a slow read while a batch and more reads are sent: they wait
    // there together, and the reads are dispatched while the batch's transaction runs.
    const slow = conn.read([SLOW_READ]);
    const groups: AppendGroup[][] = actors.map((actor, i) => [{
      actor,
      epoch: epochs[i]!,
      expectedSeq: 0,
      events: [ev(`${actor}:1`), ev(`${actor}:2`)],
      idempotency: [],
      reminders: [],
      cancels: [],
      outbox: [],
    }]);
    const written = conn.batch(
      batch({
        groups,
        activations: [{ actor: "t/d", node: "n1" }],
        custom: [[{ sql: "CREATE TABLE IF NOT EXISTS extra (k TEXT PRIMARY KEY)", args: [] }, {
          sql: "INSERT INTO extra (k) VALUES ('x') RETURNING k",
          args: [],
        }]],
      }),
      5000,
    );
    const empty = settled(conn.read([])); // what a first lookup by key sends
    const failing = conn.read([{ sql: "SELECT * FROM no_such_table", args: [] }]).then(
      () => undefined,
      (e: { message: string }) => e,
    );
    const point = settled(conn.read([{ sql: "SELECT count(*) FROM activations", args: [] }]));

    assert.deepEqual((await slow)[0], [[2000000]]);
    const outcome = await written;
    assert.deepEqual(await empty, { ok: true, value: [] });
    assert.equal(outcome.error, undefined, JSON.stringify(outcome.error));
    assert.deepEqual([...outcome.groups], actors.map(() => GROUP_WRITTEN));
    const d = outcome.activations[0]!;
    assert.ok(d.ok && d.value.won && d.value.epoch === 1, JSON.stringify(d));
    assert.deepEqual(outcome.custom[0], { ok: true, value: [[], [["x"]]] });
    assert.match((await failing)?.message ?? "it did not fail", /no such table/);
    const p = await point;
    assert.ok(p.ok, JSON.stringify(p));
    const [[n]] = p.value[0]! as [[number]];
    assert.ok(n === 3 || n === 4, `a read sees the batch whole or not at all, saw ${n} heads`);

    // Each actor's log is its own two events, at seq 1 and 2, and its head says so (once
    // closed: while open, the writer may keep heads in memory only).
    assert.deepEqual(logViolations(url), []);
    await conn.close();
    const db = sqlite(url);
    try {
      for (const actor of actors) {
        const rows = db.execute({
          sql: `SELECT e.seq, e.data FROM events AS e JOIN activations AS a ON a.id = e.actor
                WHERE a.actor = ? ORDER BY e.pos`,
          args: [actor],
        }).rows;
        assert.deepEqual(
          rows.map((r) => [Number(r[0]), dec.decode(r[1] as Uint8Array)]),
          [[1, `${actor}:1`], [2, `${actor}:2`]],
        );
        const head = db.execute({
          sql: "SELECT epoch, seq FROM activations WHERE actor = ?",
          args: [actor],
        }).rows[0]!;
        assert.deepEqual([Number(head[0]), Number(head[1])], [1, 2]);
      }
    } finally {
      db.close();
    }
  } finally {
    await conn.close();
  }
});

Deno.test("a journal's first lookups by key meet its first claims and appends on the database thread: each answers, none internal, each log its own", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/j.db`;
  // A node starting again on a file with data (a graceful restart): its first claims and
  // appends and its first lookups by key (owners, stored replies) reach the thread together.
  const before = libsqlJournal({ url });
  for (const actor of ["t/a", "t/b"]) {
    const r = await before.activate(actor, { node: "n1" });
    assert.ok(!isOwned(r));
    await before.append({ actor, epoch: r.epoch, expectedSeq: 0, events: [ev(`${actor}:1`)] });
    await before.release(actor, "n1", r.epoch);
  }
  await before.close();
  // A long log, written directly, that keeps the thread busy for a while when read whole.
  const db = sqlite(url);
  const LONG = 200_000;
  db.batch([
    {
      sql: "INSERT INTO activations (actor, epoch, seq, pos) VALUES ('t/long', 1, ?, NULL)",
      args: [LONG],
    },
    {
      sql: `INSERT INTO events (pos, actor, seq, prev, type, version, data, at)
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            SELECT top.p + i, a.id, i, CASE WHEN i = 1 THEN NULL ELSE top.p + i - 1 END,
              'noted', 1, X'00', 1
            FROM n, (SELECT id FROM activations WHERE actor = 't/long') AS a,
              (SELECT coalesce(max(pos), 0) AS p FROM events) AS top`,
      args: [LONG],
    },
    {
      sql: "UPDATE activations SET pos = (SELECT max(pos) FROM events) WHERE actor = 't/long'",
      args: [],
    },
  ]);
  db.close();

  const j = libsqlJournal({ url });
  try {
    await j.read("t/a", 1, 1); // the database thread is up; no lookup by key yet
    const long = j.read("t/long", 1, LONG);
    const claims = ["t/a", "t/b", "t/c"].map((actor) => j.activate(actor, { node: "n2" }));
    const lookups = await new Promise<Promise<unknown>[]>((resolve) =>
      // After the claims' batch left for the thread (it leaves at the end of this turn).
      setImmediate(() =>
        resolve([
          j.owner("t/a"),
          j.owner("t/b"),
          j.reply("t/a", "k1"),
          j.reply("t/b", "k1"),
        ].map((p) => p.then((v) => v, (e) => e)))
      )
    );
    assert.equal((await long).length, LONG);
    const claimed = await Promise.all(claims.map((p) => p.then((v) => v, (e) => e)));
    const looked = await Promise.all(lookups);
    for (const c of claimed) assert.ok(!(c instanceof Error) && !isOwned(c), String(c));
    for (const l of looked) assert.ok(!(l instanceof Error), String(l));
    const epochs = claimed.map((c) => (c as { epoch: number }).epoch);
    assert.deepEqual(epochs, [2, 2, 1], "each claim bumps its actor's epoch once");
    assert.deepEqual(
      claimed.map((c) =>
        (c as { events: { data: Uint8Array }[] }).events.map((e) => dec.decode(e.data))
      ),
      [["t/a:1"], ["t/b:1"], []],
    );
    // Appends of the new owner, then each log is its own.
    await Promise.all(["t/a", "t/b", "t/c"].map((actor, i) =>
      j.append({
        actor,
        epoch: epochs[i]!,
        expectedSeq: actor === "t/c" ? 0 : 1,
        events: [ev(`${actor}:next`)],
      })
    ));
    for (const actor of ["t/a", "t/b", "t/c"]) {
      const log = (await j.read(actor, 1, 10)).map((e) => [e.seq, dec.decode(e.data)]);
      assert.deepEqual(
        log,
        actor === "t/c" ? [[1, "t/c:next"]] : [[1, `${actor}:1`], [2, `${actor}:next`]],
      );
    }
    assert.deepEqual(logViolations(url), []);
  } finally {
    await j.close();
  }
});

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Makes the insert of an event with one of `payloads`, or of a store record with one of
 * `keys`, fail with `message` and roll back the whole transaction it is in (a trigger).
 * Returns a function that removes it.
 */
function inject(
  url: string,
  message: string,
  what: { payloads?: string[]; keys?: string[] },
): () => void {
  const db = sqlite(url);
  const data = (what.payloads ?? []).map((p) => `X'${hex(enc.encode(p))}'`).join(", ") || "NULL";
  const keys = (what.keys ?? []).map((k) => `'${k}'`).join(", ") || "NULL";
  db.batch([
    `CREATE TRIGGER inject_events BEFORE INSERT ON events WHEN NEW.data IN (${data})
     BEGIN SELECT RAISE(ROLLBACK, '${message}'); END`,
    `CREATE TRIGGER inject_store BEFORE INSERT ON store_records WHEN NEW.key IN (${keys})
     BEGIN SELECT RAISE(ROLLBACK, '${message}'); END`,
  ]);
  return () => {
    db.batch(["DROP TRIGGER inject_events", "DROP TRIGGER inject_store"]);
    db.close();
  };
}

/** Reads the parts of the database a batch of {@link everything} writes. */
function state(url: string) {
  const db = sqlite(url);
  try {
    const one = (sql: string, ...args: (string | number)[]) =>
      db.execute({ sql, args }).rows.map((r) =>
        [...r].map((v) => typeof v === "bigint" ? Number(v) : v)
      );
    return {
      heads: one("SELECT actor, epoch, seq, owner FROM activations ORDER BY actor"),
      reminders: one("SELECT id, actor FROM reminders ORDER BY id"),
      replies: one("SELECT actor, key FROM idempotency ORDER BY actor, key"),
      records: one("SELECT store, key, revision FROM store_records ORDER BY store, key"),
    };
  } finally {
    db.close();
  }
}

/**
 * A journal with actors t/a, t/b, t/c and t/x claimed by node n1, t/a with one event and a
 * reminder r0, and the record store's tables made.
 */
async function prepared(url: string, busyTimeoutMs: number) {
  const j = libsqlJournal({ url, busyTimeoutMs });
  const store = j.openStore();
  const epochs: Record<string, number> = {};
  for (const actor of ["t/a", "t/b", "t/c", "t/x"]) {
    const r = await j.activate(actor, { node: "n1" });
    assert.ok(!isOwned(r));
    epochs[actor] = r.epoch;
  }
  await j.append({
    actor: "t/a",
    epoch: epochs["t/a"]!,
    expectedSeq: 0,
    events: [ev("t/a:1")],
    reminders: [{ id: "r0", actor: "t/a", handler: "h", data: enc.encode("r0"), due: 1 }],
  });
  assert.equal(await store.get("s", "k", Date.now()), undefined); // makes the store's tables
  return { j, store, epochs };
}

/**
 * One write of every kind that a group commit carries, sent in one turn of the event loop (so
 * they share one transaction): appends (with an idempotency record, a reminder), a claim, a
 * release, a reminder deletion and two record store writes. Resolves with each outcome.
 */
function everything(
  j: Journal,
  store: StoreBackend,
  epochs: Record<string, number>,
) {
  const now = Date.now();
  const ops: Record<string, Promise<unknown>> = {
    a: j.append({
      actor: "t/a",
      epoch: epochs["t/a"]!,
      expectedSeq: 1,
      events: [ev("t/a:2"), ev("t/a:3")],
      idempotency: { key: "k1", fingerprint: "f1", reply: enc.encode("reply") },
    }),
    b: j.append({ actor: "t/b", epoch: epochs["t/b"]!, expectedSeq: 0, events: [ev("t/b:1")] }),
    c: j.append({
      actor: "t/c",
      epoch: epochs["t/c"]!,
      expectedSeq: 0,
      events: [ev("t/c:1")],
      reminders: [{ id: "r1", actor: "t/c", handler: "h", data: enc.encode("r1"), due: 5 }],
    }),
    d: j.activate("t/d", { node: "n1" }),
    x: j.release("t/x", "n1", epochs["t/x"]!),
    r0: j.deleteReminder("r0"),
    good: store.set("s", "good", enc.encode("v"), {}, now),
    bad: store.set("s", "bad", enc.encode("v"), {}, now),
  };
  return Promise.all(
    Object.entries(ops).map(([k, p]) =>
      p.then((value) => [k, { value }] as const, (error) => [k, { error }] as const)
    ),
  ).then((entries) =>
    Object.fromEntries(entries) as Record<string, { value?: unknown; error?: unknown }>
  );
}

for (
  const message of ["database is locked", "database table is locked", "locking protocol"]
) {
  Deno.test(`a busy database ("${message}") in the middle of a batch's transaction refuses the batch as a whole: every caller unavailable, nothing of it written; sent again, each write lands once`, async () => {
    await using tmp = await tempDir();
    const url = `file:${tmp.path}/busy.db`;
    const { j, store, epochs } = await prepared(url, 300);
    try {
      const before = state(url);
      // Fails the insert of t/b's event (mid-transaction: after the heads moved) as a busy
      // database does, rolling the transaction back, on every try.
      const remove = inject(url, message, { payloads: ["t/b:1"] });
      const refused = await everything(j, store, epochs);
      for (const [k, r] of Object.entries(refused)) {
        assert.ok(r.error instanceof UnavailableError, `${k}: ${String(r.error ?? "written")}`);
      }
      assert.deepEqual(state(url), before, "nothing of the refused batch is written");
      assert.deepEqual(logViolations(url), []);

      remove();
      const written = await everything(j, store, epochs);
      for (const [k, r] of Object.entries(written)) {
        assert.equal(r.error, undefined, `${k}: ${r.error}`);
      }
      assert.deepEqual(logViolations(url), []);
      const read = async (actor: string) =>
        (await j.read(actor, 1, 10)).map((e) => [e.seq, dec.decode(e.data)]);
      assert.deepEqual(await read("t/a"), [[1, "t/a:1"], [2, "t/a:2"], [3, "t/a:3"]]);
      assert.deepEqual(await read("t/b"), [[1, "t/b:1"]]);
      assert.deepEqual(await read("t/c"), [[1, "t/c:1"]]);
      const after = state(url);
      assert.deepEqual(after.heads, [
        ["t/a", 1, 3, "n1"],
        ["t/b", 1, 1, "n1"],
        ["t/c", 1, 1, "n1"],
        ["t/d", 1, 0, "n1"],
        ["t/x", 1, 0, null],
      ]);
      assert.deepEqual(after.reminders, [["r1", "t/c"]]);
      assert.deepEqual(after.replies, [["t/a", "k1"]]);
      assert.deepEqual(after.records, [["s", "bad", 1], ["s", "good", 1]]);
    } finally {
      await store.close();
      await j.close();
    }
  });
}

Deno.test("a statement failing otherwise in the middle of a batch's transaction fails only its own write: the others land, each caller its own outcome, no event under another actor", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/failing.db`;
  const { j, store, epochs } = await prepared(url, 5000);
  try {
    const remove = inject(url, "injected failure", { payloads: ["t/b:1"], keys: ["bad"] });
    const out = await everything(j, store, epochs);
    for (const k of ["b", "bad"]) {
      const e = out[k]!.error;
      assert.ok(e instanceof InternalError && /injected failure/.test(e.message), `${k}: ${e}`);
    }
    for (const k of ["a", "c", "d", "x", "r0", "good"]) {
      assert.equal(out[k]!.error, undefined, `${k}: ${out[k]!.error}`);
    }
    const d = out.d!.value as Recovered;
    assert.equal(d.epoch, 1);
    assert.deepEqual(logViolations(url), []);
    const read = async (actor: string) =>
      (await j.read(actor, 1, 10)).map((e) => [e.seq, dec.decode(e.data)]);
    assert.deepEqual(await read("t/a"), [[1, "t/a:1"], [2, "t/a:2"], [3, "t/a:3"]]);
    assert.deepEqual(await read("t/b"), []);
    assert.deepEqual(await read("t/c"), [[1, "t/c:1"]]);
    const after = state(url);
    assert.deepEqual(after.heads, [
      ["t/a", 1, 3, "n1"],
      ["t/b", 1, 0, "n1"],
      ["t/c", 1, 1, "n1"],
      ["t/d", 1, 0, "n1"],
      ["t/x", 1, 0, null],
    ]);
    assert.deepEqual(after.reminders, [["r1", "t/c"]]);
    assert.deepEqual(after.replies, [["t/a", "k1"]]);
    assert.deepEqual(after.records, [["s", "good", 1]]);

    // Once it no longer fails, t/b's append goes through at the same place.
    remove();
    await j.append({ actor: "t/b", epoch: epochs["t/b"]!, expectedSeq: 0, events: [ev("t/b:1")] });
    assert.deepEqual(await read("t/b"), [[1, "t/b:1"]]);
    assert.deepEqual(logViolations(url), []);
  } finally {
    await store.close();
    await j.close();
  }
});

Deno.test("a statement of a write transaction that finds the transaction ended is refused, not run on its own", async () => {
  await using tmp = await tempDir();
  const exec = nativeExecutor({
    path: `${tmp.path}/ended.db`,
    busySliceMs: 20,
    synchronous: "full",
    checkpointElsewhere: false,
  });
  try {
    await exec.write([{ sql: "CREATE TABLE t (x INTEGER)", args: [] }]);
    const err = await exec.transaction(async (run) => {
      await run({ sql: "INSERT INTO t VALUES (1)", args: [] });
      await run({ sql: "ROLLBACK", args: [] }); // something ends it early
      await run({ sql: "INSERT INTO t VALUES (2)", args: [] });
    }).then(() => undefined, (e: { code?: string; message: string }) => e);
    assert.equal(err?.code, "TRANSACTION_ENDED", String(err?.message));
    assert.deepEqual(await exec.read([{ sql: "SELECT count(*) FROM t", args: [] }]), [[[0]]]);
  } finally {
    exec.close();
  }
});

Deno.test("logViolations finds a log that runs through another actor's event, and an event in no log", async () => {
  await using tmp = await tempDir();
  const url = `file:${tmp.path}/v.db`;
  const j = libsqlJournal({ url });
  for (const actor of ["t/a", "t/b"]) {
    const r = await j.activate(actor) as Recovered;
    await j.append({ actor, epoch: r.epoch, expectedSeq: 0, events: [ev(`${actor}:1`)] });
  }
  await j.close();
  assert.deepEqual(logViolations(url), []);
  const db = sqlite(url);
  try {
    // t/b's head at t/a's event (t/b's log reads t/a's event), and an event no head reaches.
    db.batch([
      "UPDATE activations SET pos = (SELECT pos FROM activations WHERE actor = 't/a') WHERE actor = 't/b'",
      `INSERT INTO events (pos, actor, seq, prev, type, version, data, at)
       SELECT max(pos) + 1, 1, 2, max(pos), 'noted', 1, X'00', 1 FROM events`,
    ]);
  } finally {
    db.close();
  }
  const found = logViolations(url);
  assert.ok(
    found.some((v) => /^t\/b: at position \d+ seq 1 expected, found actor id 1 /.test(v)),
    found.join("; "),
  );
  assert.ok(
    found.some((v) => /^3 events, but the heads' seqs add up to 2$/.test(v)),
    found.join("; "),
  );
});

Deno.test("a writer past its cache of actors starts again without refusing anyone: appends of 120 actors with room for 50 all land, heads caught up", async () => {
  await using tmp = await tempDir();
  const path = `${tmp.path}/cap.db`;
  const open = async (cachedActors?: number) => {
    const exec = nativeExecutor({
      path,
      busySliceMs: 1000,
      synchronous: "normal",
      checkpointElsewhere: false,
    });
    const e = new Engine(exec, { url: `file:${path}`, ...(cachedActors ? { cachedActors } : {}) });
    await e.open();
    return e;
  };
  // The actors are claimed through another connection: the writer knows none of them.
  const claimer = await open();
  const actors = Array.from({ length: 120 }, (_, i) => `cap/${i}`);
  let epochs: number[];
  try {
    const claimed = await claimer.batch(
      batch({ activations: actors.map((actor) => ({ actor, node: "n1" })) }) as WriteBatch,
      5000,
    );
    epochs = claimed.activations.map((r) => {
      assert.ok(r.ok && r.value.won, JSON.stringify(r));
      return r.value.epoch;
    });
  } finally {
    claimer.close();
  }
  const engine = await open(50);
  const seqs = actors.map(() => 0);
  try {
    // Windows of 40 actors sliding by 20: each batch meets actors it knows and actors it does
    // not, and its id map and cache overflow again and again.
    for (let w = 0; w < 18; w++) {
      const mine = Array.from({ length: 40 }, (_, k) => (w * 20 + k) % 120);
      const out = await engine.batch(
        batch({
          groups: mine.map((i) => [{
            actor: actors[i]!,
            epoch: epochs[i]!,
            expectedSeq: seqs[i]!,
            events: [ev(`${actors[i]}:${seqs[i]}`)],
            idempotency: [],
            reminders: [],
            cancels: [],
            outbox: [],
          }]),
        }) as WriteBatch,
        5000,
      );
      assert.equal(out.error, undefined, JSON.stringify(out.error));
      assert.deepEqual([...out.groups], mine.map(() => GROUP_WRITTEN), JSON.stringify(out.heads));
      for (const i of mine) seqs[i]!++;
    }
    assert.deepEqual(new Set(seqs), new Set([6]));
    assert.deepEqual(logViolations(`file:${path}`), []);
    const rows = await engine.read([readStatement("cap/77", 1, 10)]);
    assert.deepEqual(
      rows[0]!.map((r) => dec.decode(r[3] as Uint8Array)),
      [0, 1, 2, 3, 4, 5].map((s) => `cap/77:${s}`),
    );
    await engine.flush();
  } finally {
    engine.close();
  }
  const db = sqlite(`file:${path}`);
  try {
    assert.deepEqual(
      db.execute("SELECT count(*), min(seq), max(seq) FROM activations").rows.map((r) => [...r]),
      [[120, 6, 6]],
    );
  } finally {
    db.close();
  }
});
