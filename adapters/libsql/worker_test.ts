/**
 * The database thread of a local shard (`_worker.ts`, reached through `_connection.ts`): a
 * write transaction is the connection's alone until it ends. Reads are served between writes,
 * never inside one: the thread gets messages between the steps of a batch's transaction (Deno
 * dispatches a waiting message between two microtasks), and a read that began, failed or
 * rolled back on the writer's connection used to end the batch's transaction there, so the
 * rest of the batch ran outside any transaction, each statement committed on its own, and the
 * batch failed with "cannot commit - no transaction is active".
 */
import assert from "node:assert/strict";
import { connect } from "./_connection.ts";
import { GROUP_WRITTEN, type WriteBatch } from "./_engine.ts";
import type { AppendGroup } from "./_sql.ts";
import { encodeGroups } from "./_wire.ts";
import { sqlite } from "../../tests/_sqlite.ts";
import { libsqlJournal } from "./journal.ts";
import { isOwned } from "../../src/journal/types.ts";

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
    groups: encodeGroups(
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

    // Each actor's log is its own two events, at seq 1 and 2, and its head says so.
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
  } finally {
    await j.close();
  }
});
