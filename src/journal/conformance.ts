/**
 * The conformance suite of the {@link Journal} port: every implementation registers it in its
 * own test file and must pass all of it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ActorError, ConflictError } from "../errors.ts";
import {
  type Append,
  type Claim,
  isOwned,
  type Journal,
  type NewEvent,
  type Owned,
  type Recovered,
  type Reminder,
} from "./types.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function ev(text: string, at = 1_700_000_000_000): NewEvent {
  return { type: "noted", version: 1, data: enc.encode(text), at };
}

function texts(events: readonly { data: Uint8Array }[]): string[] {
  return events.map((e) => dec.decode(e.data));
}

/** Activates without a claim: always a {@link Recovered}. */
async function recover(j: Journal, actor: string): Promise<Recovered> {
  const r = await j.activate(actor);
  assert.ok(!isOwned(r), `activate("${actor}") without a claim was refused`);
  return r;
}

/** Activates with a claim that must succeed. */
async function claim(j: Journal, actor: string, c: Claim): Promise<Recovered> {
  const r = await j.activate(actor, c);
  assert.ok(
    !isOwned(r),
    `the claim of ${c.node} on "${actor}" was refused (owner ${isOwned(r) ? r.owner : ""})`,
  );
  return r;
}

/** Activates with a claim that must be refused. */
async function refused(j: Journal, actor: string, c: Claim): Promise<Owned> {
  const r = await j.activate(actor, c);
  assert.ok(isOwned(r), `the claim of ${c.node} on "${actor}" was not refused`);
  return r;
}

async function rejectsWith(p: Promise<unknown>, code: string, match?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ActorError, `expected an ActorError, got ${String(err)}`);
    assert.equal(err.code, code, `unexpected code of: ${err.message}`);
    if (match) assert.match(err.message, match);
    return true;
  });
}

/**
 * Registers the Journal conformance tests with `Deno.test`, each on a fresh journal from
 * `open` (closed at the end of the test).
 *
 * @param name Shown in front of each test name, e.g. `"memory"` or `"libsql file:"`.
 * @param open Opens a fresh, empty journal.
 *
 * @example
 * ```ts
 * // my_journal_test.ts, run by `deno test`
 * import { memoryJournal } from "@troupe/troupe";
 * import { journalConformance } from "@troupe/troupe/spi";
 * journalConformance("memory", () => Promise.resolve(memoryJournal()));
 * ```
 */
export function journalConformance(name: string, open: () => Promise<Journal>): void {
  function test(title: string, fn: (j: Journal) => Promise<void>): void {
    Deno.test(`journal conformance (${name}): ${title}`, async () => {
      const j = await open();
      try {
        await fn(j);
      } finally {
        await j.close();
      }
    });
  }

  test("activate() of a new actor gives epoch 1 and an empty log", async (j) => {
    const rec = await recover(j, "t/new");
    assert.equal(rec.epoch, 1);
    assert.equal(rec.seq, 0);
    assert.deepEqual(rec.events, []);
    assert.equal(rec.snapshot, undefined);
    assert.deepEqual(await j.read("t/new", 1, 100), []);
    assert.deepEqual(await j.read("t/never", 1, 100), []);
  });

  test("activate() bumps the epoch each time", async (j) => {
    const a = await recover(j, "t/a");
    const b = await recover(j, "t/a");
    const c = await recover(j, "t/a");
    assert.ok(a.epoch < b.epoch && b.epoch < c.epoch);
    assert.equal((await recover(j, "t/other")).epoch, 1);
  });

  test("append() then read() returns the events with seq 1, 2, … and their fields", async (j) => {
    const { epoch } = await recover(j, "t/a");
    await j.append({ actor: "t/a", epoch, expectedSeq: 0, events: [ev("one", 5), ev("two", 6)] });
    await j.append({
      actor: "t/a",
      epoch,
      expectedSeq: 2,
      events: [{ type: "other", version: 3, data: new Uint8Array([0, 255, 7]), at: 7 }],
    });
    const events = await j.read("t/a", 1, 100);
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
    assert.deepEqual(events.map((e) => [e.type, e.version, e.at]), [
      ["noted", 1, 5],
      ["noted", 1, 6],
      ["other", 3, 7],
    ]);
    assert.ok(events[0]!.data instanceof Uint8Array);
    assert.deepEqual([...events[2]!.data], [0, 255, 7]);
    const rec = await recover(j, "t/a");
    assert.equal(rec.seq, 3);
    assert.deepEqual(texts(rec.events.slice(0, 2)), ["one", "two"]);
  });

  test("stored data does not alias the caller's buffers", async (j) => {
    const { epoch } = await recover(j, "t/a");
    const data = enc.encode("abc");
    await j.append({
      actor: "t/a",
      epoch,
      expectedSeq: 0,
      events: [{ type: "x", version: 1, data, at: 1 }],
    });
    data[0] = 0;
    const [e] = await j.read("t/a", 1, 1);
    assert.equal(dec.decode(e!.data), "abc");
  });

  test("read() pages with from and limit", async (j) => {
    const { epoch } = await recover(j, "t/p");
    for (let i = 0; i < 25; i++) {
      await j.append({ actor: "t/p", epoch, expectedSeq: i, events: [ev(`e${i + 1}`)] });
    }
    const seen: number[] = [];
    for (let from = 1;;) {
      const page = await j.read("t/p", from, 10);
      if (page.length === 0) break;
      assert.ok(page.length <= 10);
      seen.push(...page.map((e) => e.seq));
      from = page[page.length - 1]!.seq + 1;
    }
    assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => i + 1));
    assert.deepEqual((await j.read("t/p", 24, 10)).map((e) => e.seq), [24, 25]);
    assert.deepEqual(await j.read("t/p", 26, 10), []);
    assert.deepEqual(texts(await j.read("t/p", 7, 2)), ["e7", "e8"]);
  });

  test("activate() returns the latest snapshot and only the events after it", async (j) => {
    const { epoch } = await recover(j, "t/s");
    await j.append({ actor: "t/s", epoch, expectedSeq: 0, events: [ev("1"), ev("2"), ev("3")] });
    await j.append({
      actor: "t/s",
      epoch,
      expectedSeq: 3,
      events: [ev("4")],
      snapshot: { seq: 4, version: 2, state: enc.encode("state@4") },
    });
    await j.append({ actor: "t/s", epoch, expectedSeq: 4, events: [ev("5"), ev("6")] });
    const rec = await recover(j, "t/s");
    assert.equal(rec.seq, 6);
    assert.equal(rec.snapshot?.seq, 4);
    assert.equal(rec.snapshot?.version, 2);
    assert.equal(dec.decode(rec.snapshot!.state), "state@4");
    assert.deepEqual(rec.events.map((e) => e.seq), [5, 6]);
    assert.deepEqual(texts(rec.events), ["5", "6"]);
    // A snapshot at the head: no events to replay.
    await j.append({
      actor: "t/s",
      epoch: rec.epoch,
      expectedSeq: 6,
      events: [],
      snapshot: { seq: 6, version: 2, state: enc.encode("state@6") },
    });
    const again = await recover(j, "t/s");
    assert.equal(again.seq, 6);
    assert.equal(again.snapshot?.seq, 6);
    assert.deepEqual(again.events, []);
    // The full log is still there.
    assert.equal((await j.read("t/s", 1, 100)).length, 6);
  });

  test("append() with a wrong expectedSeq rejects with conflict and writes nothing", async (j) => {
    const { epoch } = await recover(j, "t/c");
    await j.append({ actor: "t/c", epoch, expectedSeq: 0, events: [ev("1")] });
    const bad: Append = {
      actor: "t/c",
      epoch,
      expectedSeq: 0,
      events: [ev("x")],
      snapshot: { seq: 1, version: 1, state: enc.encode("s") },
      idempotency: { key: "k1", reply: enc.encode("r"), fingerprint: "h:fp" },
      reminders: [{ id: "rem-c", actor: "t/c", handler: "h", data: enc.encode("d"), due: 10 }],
    };
    await rejectsWith(j.append(bad), "conflict", /seq/);
    await rejectsWith(j.append({ ...bad, expectedSeq: 5 }), "conflict", /seq/);
    assert.deepEqual(texts(await j.read("t/c", 1, 100)), ["1"]);
    assert.equal(await j.reply("t/c", "k1"), undefined);
    assert.equal(await j.nextReminder(), undefined);
    const rec = await recover(j, "t/c");
    assert.equal(rec.snapshot, undefined);
    assert.equal(rec.seq, 1);
  });

  test("a stale epoch is fenced: the older activation's append fails, no fork, no gap", async (j) => {
    const old = await recover(j, "t/f");
    await j.append({ actor: "t/f", epoch: old.epoch, expectedSeq: 0, events: [ev("old-1")] });
    const cur = await recover(j, "t/f");
    assert.equal(cur.seq, 1);
    await rejectsWith(
      j.append({ actor: "t/f", epoch: old.epoch, expectedSeq: 1, events: [ev("old-2")] }),
      "conflict",
      /epoch/,
    );
    await j.append({ actor: "t/f", epoch: cur.epoch, expectedSeq: 1, events: [ev("new-2")] });
    // Even with the right seq, the old epoch stays fenced.
    await rejectsWith(
      j.append({ actor: "t/f", epoch: old.epoch, expectedSeq: 2, events: [ev("old-3")] }),
      "conflict",
      /epoch/,
    );
    const events = await j.read("t/f", 1, 100);
    assert.deepEqual(events.map((e) => e.seq), [1, 2]);
    assert.deepEqual(texts(events), ["old-1", "new-2"]);
  });

  test("append() to an actor that was never activated is a conflict", async (j) => {
    await rejectsWith(
      j.append({ actor: "t/none", epoch: 0, expectedSeq: 0, events: [ev("x")] }),
      "conflict",
    );
    await rejectsWith(
      j.append({ actor: "t/none", epoch: 1, expectedSeq: 0, events: [ev("x")] }),
      "conflict",
    );
    assert.deepEqual(await j.read("t/none", 1, 10), []);
  });

  test("events, snapshot, idempotency record and reminders are written together", async (j) => {
    const { epoch } = await recover(j, "t/at");
    const reminders: Reminder[] = [
      { id: "r1", actor: "t/at", handler: "tick", data: enc.encode("p1"), due: 200 },
      { id: "r2", actor: "t/at", handler: "tock", data: enc.encode("p2"), due: 100 },
    ];
    await j.append({
      actor: "t/at",
      epoch,
      expectedSeq: 0,
      events: [ev("1"), ev("2")],
      snapshot: { seq: 2, version: 1, state: enc.encode("S2") },
      idempotency: { key: "msg-1", reply: enc.encode("reply-1"), fingerprint: "h:fp" },
      reminders,
    });
    assert.equal(dec.decode((await j.reply("t/at", "msg-1"))!.reply), "reply-1");
    const due = await j.dueReminders(1000, 10);
    assert.deepEqual(due.map((r) => [r.id, r.actor, r.handler, dec.decode(r.data), r.due]), [
      ["r2", "t/at", "tock", "p2", 100],
      ["r1", "t/at", "tick", "p1", 200],
    ]);
    const rec = await recover(j, "t/at");
    assert.equal(dec.decode(rec.snapshot!.state), "S2");
    assert.equal(rec.seq, 2);
    // A fenced append with all parts leaves no part behind.
    await rejectsWith(
      j.append({
        actor: "t/at",
        epoch,
        expectedSeq: 2,
        events: [ev("3")],
        snapshot: { seq: 3, version: 1, state: enc.encode("S3") },
        idempotency: { key: "msg-2", reply: enc.encode("reply-2"), fingerprint: "h:fp" },
        reminders: [{ id: "r3", actor: "t/at", handler: "h", data: enc.encode(""), due: 1 }],
      }),
      "conflict",
    );
    assert.equal(await j.reply("t/at", "msg-2"), undefined);
    assert.deepEqual((await j.dueReminders(1000, 10)).map((r) => r.id), ["r2", "r1"]);
    const after = await recover(j, "t/at");
    assert.equal(after.seq, 2);
    assert.equal(dec.decode(after.snapshot!.state), "S2");
  });

  test("reply() finds a stored reply by actor and key; an append may carry only a reply", async (j) => {
    const { epoch } = await recover(j, "t/i");
    await j.append({
      actor: "t/i",
      epoch,
      expectedSeq: 0,
      events: [],
      idempotency: { key: "k", reply: new Uint8Array([1, 2, 3]), fingerprint: "h:fp" },
    });
    const stored = await j.reply("t/i", "k");
    assert.deepEqual([...stored!.reply], [1, 2, 3]);
    assert.equal(stored!.fingerprint, "h:fp");
    assert.equal(await j.reply("t/i", "other"), undefined);
    assert.equal(await j.reply("t/other", "k"), undefined);
    assert.equal((await recover(j, "t/i")).seq, 0);
  });

  test("concurrent appends of many actors all succeed, each acknowledged on its own", async (j) => {
    const actors = Array.from({ length: 200 }, (_, i) => `t/many-${i}`);
    const epochs = await Promise.all(actors.map(async (a) => (await recover(j, a)).epoch));
    const rounds = 5;
    await Promise.all(actors.map(async (actor, i) => {
      for (let r = 0; r < rounds; r++) {
        await j.append({ actor, epoch: epochs[i]!, expectedSeq: r, events: [ev(`${actor}:${r}`)] });
      }
    }));
    for (const actor of actors) {
      const events = await j.read(actor, 1, 100);
      assert.deepEqual(texts(events), Array.from({ length: rounds }, (_, r) => `${actor}:${r}`));
    }
  });

  test("one conflicting append in a concurrent burst fails alone", async (j) => {
    const actors = Array.from({ length: 100 }, (_, i) => `t/burst-${i}`);
    const epochs = await Promise.all(actors.map(async (a) => (await recover(j, a)).epoch));
    const results = await Promise.allSettled(actors.map((actor, i) =>
      j.append({
        actor,
        epoch: epochs[i]!,
        expectedSeq: i === 42 ? 7 : 0,
        events: [ev(actor)],
        idempotency: { key: "k", reply: enc.encode(actor), fingerprint: "h:fp" },
      })
    ));
    results.forEach((r, i) => {
      if (i === 42) {
        assert.equal(r.status, "rejected");
        assert.equal((r as PromiseRejectedResult).reason.code, "conflict");
      } else assert.equal(r.status, "fulfilled", `append ${i} failed`);
    });
    for (const [i, actor] of actors.entries()) {
      assert.deepEqual(texts(await j.read(actor, 1, 10)), i === 42 ? [] : [actor]);
      assert.equal(await j.reply(actor, "k") !== undefined, i !== 42);
    }
  });

  test("two concurrent appends of one actor chain when the second expects the first", async (j) => {
    const { epoch } = await recover(j, "t/chain");
    const [a, b, c] = await Promise.allSettled([
      j.append({ actor: "t/chain", epoch, expectedSeq: 0, events: [ev("1"), ev("2")] }),
      j.append({ actor: "t/chain", epoch, expectedSeq: 2, events: [ev("3")] }),
      j.append({ actor: "t/chain", epoch, expectedSeq: 2, events: [ev("dup")] }),
    ]);
    assert.equal(a.status, "fulfilled");
    assert.equal(b.status, "fulfilled");
    assert.equal(c.status, "rejected");
    assert.deepEqual(texts(await j.read("t/chain", 1, 10)), ["1", "2", "3"]);
  });

  test("reminders: due in order with a limit, next, upsert by id, delete is idempotent", async (j) => {
    assert.equal(await j.nextReminder(), undefined);
    assert.deepEqual(await j.dueReminders(Number.MAX_SAFE_INTEGER, 10), []);
    const { epoch } = await recover(j, "t/r");
    const r = (id: string, due: number): Reminder => ({
      id,
      actor: "t/r",
      handler: "h",
      data: enc.encode(id),
      due,
    });
    await j.append({
      actor: "t/r",
      epoch,
      expectedSeq: 0,
      events: [],
      reminders: [r("c", 300), r("a", 100), r("b", 200)],
    });
    assert.equal(await j.nextReminder(), 100);
    assert.deepEqual((await j.dueReminders(99, 10)).map((x) => x.id), []);
    assert.deepEqual((await j.dueReminders(200, 10)).map((x) => x.id), ["a", "b"]);
    assert.deepEqual((await j.dueReminders(1000, 2)).map((x) => x.id), ["a", "b"]);
    await j.append({ actor: "t/r", epoch, expectedSeq: 0, events: [], reminders: [r("a", 400)] });
    assert.equal(await j.nextReminder(), 200);
    await j.deleteReminder("b");
    await j.deleteReminder("b");
    await j.deleteReminder("unknown");
    assert.deepEqual((await j.dueReminders(1000, 10)).map((x) => [x.id, x.due]), [
      ["c", 300],
      ["a", 400],
    ]);
    await j.deleteReminder("c");
    await j.deleteReminder("a");
    assert.equal(await j.nextReminder(), undefined);
  });

  test("reminders keep their cron, name, trace and caller; a cancel in an append deletes, a reschedule moves only the same one", async (j) => {
    const { epoch } = await recover(j, "t/cr");
    const caller = enc.encode("who");
    const tick: Reminder = {
      id: "t/cr#tick",
      actor: "t/cr",
      handler: "h",
      data: enc.encode("x"),
      due: 100,
      cron: "*/5 * * * *",
      name: "tick",
      trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      caller,
    };
    const plain: Reminder = {
      id: "p",
      actor: "t/cr",
      handler: "h",
      data: enc.encode("y"),
      due: 50,
    };
    await j.append({ actor: "t/cr", epoch, expectedSeq: 0, events: [], reminders: [tick, plain] });
    const due = await j.dueReminders(1000, 10);
    assert.deepEqual(due.map((r) => ({ ...r, data: dec.decode(r.data) })), [
      { ...plain, data: "y" },
      { ...tick, data: "x" },
    ]);
    // moved only from the due it fired at
    await j.rescheduleReminder("t/cr#tick", 999, 500); // not its due: nothing
    assert.deepEqual((await j.dueReminders(1000, 10)).map((r) => [r.id, r.due]), [
      ["p", 50],
      ["t/cr#tick", 100],
    ]);
    await j.rescheduleReminder("t/cr#tick", 100, 500);
    await j.rescheduleReminder("unknown", 1, 2);
    assert.deepEqual((await j.dueReminders(1000, 10)).map((r) => [r.id, r.due]), [
      ["p", 50],
      ["t/cr#tick", 500],
    ]);
    // a cancel rides on an append (with its fence): a refused append cancels nothing
    await assert.rejects(
      j.append({
        actor: "t/cr",
        epoch: epoch + 7,
        expectedSeq: 0,
        events: [],
        cancelReminders: ["p"],
      }),
      ConflictError,
    );
    assert.equal((await j.dueReminders(1000, 10)).length, 2);
    await j.append({
      actor: "t/cr",
      epoch,
      expectedSeq: 0,
      events: [],
      cancelReminders: ["p", "never-was"],
    });
    assert.deepEqual((await j.dueReminders(1000, 10)).map((r) => r.id), ["t/cr#tick"]);
    await j.deleteReminder("t/cr#tick");
  });

  test("the outbox: stored with the turn's commit (not with a refused one), read oldest first, deleted by id", async (j) => {
    const { epoch } = await recover(j, "t/o");
    const shard = j.shardOf("t/o");
    const m = (id: string) => ({
      id,
      topic: "orders.created",
      data: enc.encode(id),
      contentType: "application/msgpack",
      at: 1,
    });
    assert.deepEqual(await j.readOutbox(shard, 10), []);
    await j.append({
      actor: "t/o",
      epoch,
      expectedSeq: 0,
      events: [ev("e1")],
      outbox: [m("a"), m("b")],
    });
    await assert.rejects(
      j.append({ actor: "t/o", epoch, expectedSeq: 0, events: [ev("stale")], outbox: [m("x")] }),
      ConflictError,
    );
    await j.append({ actor: "t/o", epoch, expectedSeq: 1, events: [ev("e2")], outbox: [m("c")] });
    const stored = await j.readOutbox(shard, 10);
    assert.deepEqual(stored.map((x) => [x.id, x.topic, dec.decode(x.data), x.contentType]), [
      ["a", "orders.created", "a", "application/msgpack"],
      ["b", "orders.created", "b", "application/msgpack"],
      ["c", "orders.created", "c", "application/msgpack"],
    ]);
    assert.deepEqual((await j.readOutbox(shard, 2)).map((x) => x.id), ["a", "b"]);
    await j.deleteOutbox(shard, ["a", "c", "unknown"]);
    assert.deepEqual((await j.readOutbox(shard, 10)).map((x) => x.id), ["b"]);
    await j.deleteOutbox(shard, ["b"]);
    assert.deepEqual(await j.readOutbox(shard, 10), []);
  });

  test("appends of one actor made without waiting apply in call order; one that fails fails those that counted on it", async (j) => {
    const { epoch } = await recover(j, "t/pipe");
    // Ten appends in flight at once, each expecting the head the previous one leaves.
    const first = await Promise.allSettled(Array.from({ length: 10 }, (_, i) =>
      j.append({
        actor: "t/pipe",
        epoch,
        expectedSeq: i * 2,
        events: [ev(`${i}a`), ev(`${i}b`)],
        idempotency: { key: `k${i}`, reply: enc.encode(`r${i}`), fingerprint: `h:${i}` },
      })));
    assert.deepEqual(first.map((r) => r.status), Array(10).fill("fulfilled"));
    assert.deepEqual(
      texts(await j.read("t/pipe", 1, 100)),
      Array.from({ length: 10 }, (_, i) => [`${i}a`, `${i}b`]).flat(),
    );
    assert.equal((await j.reply("t/pipe", "k9"))?.fingerprint, "h:9");
    // The first of the next three expects a wrong head: it and both that counted on it fail;
    // an append made after them that expects the true head goes through.
    const second = await Promise.allSettled([
      j.append({ actor: "t/pipe", epoch, expectedSeq: 21, events: [ev("x1"), ev("x2")] }),
      j.append({ actor: "t/pipe", epoch, expectedSeq: 23, events: [ev("y")] }),
      j.append({ actor: "t/pipe", epoch, expectedSeq: 24, events: [ev("z")] }),
      j.append({ actor: "t/pipe", epoch, expectedSeq: 20, events: [ev("ok")] }),
    ]);
    assert.deepEqual(second.map((r) => r.status), [
      "rejected",
      "rejected",
      "rejected",
      "fulfilled",
    ]);
    for (const r of second.slice(0, 3)) {
      assert.equal((r as PromiseRejectedResult).reason.code, "conflict");
    }
    assert.deepEqual(texts(await j.read("t/pipe", 20, 10)), ["9b", "ok"]);
    // After a newer activation, every append of the old epoch in flight fails.
    const next = await recover(j, "t/pipe");
    const third = await Promise.allSettled([
      j.append({ actor: "t/pipe", epoch, expectedSeq: 21, events: [ev("late1")] }),
      j.append({ actor: "t/pipe", epoch, expectedSeq: 22, events: [ev("late2")] }),
    ]);
    assert.deepEqual(third.map((r) => r.status), ["rejected", "rejected"]);
    assert.equal(next.seq, 21);
    assert.deepEqual(third.map((r) => (r as PromiseRejectedResult).reason.code), [
      "conflict",
      "conflict",
    ]);
    assert.equal((await j.read("t/pipe", 1, 100)).length, 21);
  });

  test("readCommitted() gives every event once, in commit order per shard, resumable after any position", async (j) => {
    assert.ok(Number.isSafeInteger(j.shards) && j.shards >= 1);
    const actors = Array.from({ length: 30 }, (_, i) => `t/feed-${i}`);
    for (const a of actors) {
      const s = j.shardOf(a);
      assert.ok(Number.isSafeInteger(s) && s >= 0 && s < j.shards, `shardOf(${a}) = ${s}`);
      assert.equal(j.shardOf(a), s, "the same shard each time");
    }
    const epochs = await Promise.all(actors.map(async (a) => (await recover(j, a)).epoch));
    // Three rounds: each actor appends two events per round, all actors at once.
    for (let round = 0; round < 3; round++) {
      await Promise.all(actors.map((actor, i) =>
        j.append({
          actor,
          epoch: epochs[i]!,
          expectedSeq: round * 2,
          events: [ev(`${actor}:${round}a`), ev(`${actor}:${round}b`)],
        })
      ));
    }
    const seen = new Map<string, number[]>();
    for (let shard = 0; shard < j.shards; shard++) {
      // Read in small pages, resuming after the last position.
      const all = [];
      for (let after = 0;;) {
        const page = await j.readCommitted(shard, after, 7);
        assert.ok(page.length <= 7);
        if (page.length === 0) break;
        all.push(...page);
        after = page[page.length - 1]!.position;
      }
      for (let i = 1; i < all.length; i++) {
        assert.ok(all[i]!.position > all[i - 1]!.position, "positions increase");
      }
      for (const e of all) {
        assert.equal(j.shardOf(e.actor), shard, `${e.actor} read from its shard`);
        const seqs = seen.get(e.actor) ?? [];
        seqs.push(e.seq);
        seen.set(e.actor, seqs);
        const round = Math.floor((e.seq - 1) / 2);
        assert.equal(dec.decode(e.data), `${e.actor}:${round}${e.seq % 2 === 1 ? "a" : "b"}`);
        assert.equal(e.type, "noted");
      }
      // All of round 0 (each actor's events 1, 2) committed before any of round 1.
      const firstOfRound1 = all.findIndex((e) => e.seq === 3);
      const lastOfRound0 = all.findLastIndex((e) => e.seq === 2);
      assert.ok(lastOfRound0 < firstOfRound1, "commit order follows the rounds");
      // Resuming after a position gives exactly what follows it.
      const mid = all[Math.floor(all.length / 2)]!;
      const rest = await j.readCommitted(shard, mid.position, 1000);
      assert.deepEqual(
        rest.map((e) => e.position),
        all.filter((e) => e.position > mid.position).map((e) => e.position),
      );
    }
    assert.equal(seen.size, actors.length);
    for (const [actor, seqs] of seen) assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6], actor);
    await assert.rejects(j.readCommitted(j.shards, 0, 10), RangeError);
    await assert.rejects(j.readCommitted(0, -1, 10), RangeError);
  });

  test("pruneIdempotency() drops records past their age and keeps younger ones", async (j) => {
    const { epoch } = await recover(j, "t/prune");
    await j.append({
      actor: "t/prune",
      epoch,
      expectedSeq: 0,
      events: [],
      idempotency: { key: "old", reply: enc.encode("r"), fingerprint: "h:fp" },
    });
    await j.pruneIdempotency(Date.now());
    assert.ok(await j.reply("t/prune", "old"), "a fresh record is kept");
    await j.pruneIdempotency(Date.now() + 48 * 60 * 60 * 1000);
    assert.equal(
      await j.reply("t/prune", "old"),
      undefined,
      "a record past the retention is dropped",
    );
  });

  test("a claim on an actor without an owner records the claimer; owner() reads it", async (j) => {
    assert.equal(await j.owner("t/o"), undefined);
    const rec = await claim(j, "t/o", { node: "n1" });
    assert.equal(rec.epoch, 1);
    assert.equal(rec.seq, 0);
    assert.deepEqual(await j.owner("t/o"), { owner: "n1", epoch: 1 });
    // The claim gives a normal activation: its epoch appends.
    await j.append({ actor: "t/o", epoch: rec.epoch, expectedSeq: 0, events: [ev("1")] });
    // The owner claims again (a restart of its activation): a new epoch, the log read back.
    const again = await claim(j, "t/o", { node: "n1" });
    assert.equal(again.epoch, 2);
    assert.equal(again.seq, 1);
    assert.deepEqual(texts(again.events), ["1"]);
    assert.deepEqual(await j.owner("t/o"), { owner: "n1", epoch: 2 });
    assert.equal(await j.owner("t/other"), undefined);
  });

  test("a claim on an actor owned by another node is refused and writes nothing", async (j) => {
    const rec = await claim(j, "t/o", { node: "n1" });
    const owned = await refused(j, "t/o", { node: "n2" });
    assert.deepEqual(owned, { owner: "n1", epoch: rec.epoch });
    // A takeover naming another node than the owner is refused too.
    assert.deepEqual(await refused(j, "t/o", { node: "n2", takeOver: "n3" }), owned);
    // Nothing was written: the owner's epoch still appends.
    await j.append({ actor: "t/o", epoch: rec.epoch, expectedSeq: 0, events: [ev("1")] });
    assert.deepEqual(await j.owner("t/o"), { owner: "n1", epoch: rec.epoch });
  });

  test("a takeover replaces exactly the owner it names and fences it", async (j) => {
    const old = await claim(j, "t/o", { node: "n1" });
    await j.append({ actor: "t/o", epoch: old.epoch, expectedSeq: 0, events: [ev("by-n1")] });
    const rec = await claim(j, "t/o", { node: "n2", takeOver: "n1" });
    assert.ok(rec.epoch > old.epoch);
    assert.equal(rec.seq, 1);
    assert.deepEqual(texts(rec.events), ["by-n1"]);
    assert.deepEqual(await j.owner("t/o"), { owner: "n2", epoch: rec.epoch });
    await rejectsWith(
      j.append({ actor: "t/o", epoch: old.epoch, expectedSeq: 1, events: [ev("late")] }),
      "conflict",
      /epoch/,
    );
    // A second takeover of the same dead node finds the new owner and is refused.
    assert.deepEqual(await refused(j, "t/o", { node: "n3", takeOver: "n1" }), {
      owner: "n2",
      epoch: rec.epoch,
    });
  });

  test("release() clears the owner only at its node and epoch, idempotently", async (j) => {
    const rec = await claim(j, "t/o", { node: "n1" });
    await j.release("t/o", "n2", rec.epoch); // another node: nothing
    await j.release("t/o", "n1", rec.epoch - 1); // an older epoch: nothing
    await j.release("t/never", "n1", 1); // an unknown actor: nothing
    assert.deepEqual(await j.owner("t/o"), { owner: "n1", epoch: rec.epoch });
    await j.release("t/o", "n1", rec.epoch);
    await j.release("t/o", "n1", rec.epoch);
    assert.equal(await j.owner("t/o"), undefined);
    // Free again: any node claims it, with a newer epoch, and a late release of the old
    // activation does not clear the new owner.
    const next = await claim(j, "t/o", { node: "n2" });
    assert.ok(next.epoch > rec.epoch);
    await j.release("t/o", "n1", rec.epoch);
    assert.deepEqual(await j.owner("t/o"), { owner: "n2", epoch: next.epoch });
    // The owner's own earlier activation cannot release its later one either.
    const later = await claim(j, "t/o", { node: "n2" });
    await j.release("t/o", "n2", next.epoch);
    assert.deepEqual(await j.owner("t/o"), { owner: "n2", epoch: later.epoch });
  });

  test("activate() without a claim bumps the epoch and leaves no owner", async (j) => {
    const rec = await claim(j, "t/o", { node: "n1" });
    const plain = await recover(j, "t/o");
    assert.ok(plain.epoch > rec.epoch);
    assert.equal(await j.owner("t/o"), undefined);
    assert.equal((await claim(j, "t/o", { node: "n2" })).epoch, plain.epoch + 1);
  });

  test("concurrent claims of one actor by several nodes: exactly one wins", async (j) => {
    for (let round = 0; round < 5; round++) {
      const actor = `t/race-${round}`;
      const nodes = ["n1", "n2", "n3", "n4"];
      const results = await Promise.all(nodes.map((node) => j.activate(actor, { node })));
      const winners = nodes.filter((_, i) => !isOwned(results[i]!));
      assert.equal(winners.length, 1, `round ${round}: winners ${winners.join(",")}`);
      const won = results.find((r) => !isOwned(r)) as Recovered;
      for (const r of results) {
        if (isOwned(r)) assert.deepEqual(r, { owner: winners[0], epoch: won.epoch });
      }
      assert.deepEqual(await j.owner(actor), { owner: winners[0], epoch: won.epoch });
    }
  });

  test("a claim without a node is a TypeError", async (j) => {
    await assert.rejects(j.activate("t/o", { node: "" }), TypeError);
    await assert.rejects(j.activate("", { node: "n1" }), TypeError);
    assert.equal(await j.owner("t/o"), undefined);
  });

  Deno.test(`journal conformance (${name}): every call after close() rejects with closed`, async () => {
    const j = await open();
    const { epoch } = await recover(j, "t/x");
    const pending = j.append({ actor: "t/x", epoch, expectedSeq: 0, events: [ev("1")] });
    await j.close();
    await pending; // accepted before close(): close() waits for it
    await j.close(); // idempotent
    const calls: Promise<unknown>[] = [
      j.activate("t/x"),
      j.activate("t/x", { node: "n1" }),
      j.release("t/x", "n1", epoch),
      j.owner("t/x"),
      j.readCommitted(0, 0, 10),
      j.pruneIdempotency(Date.now()),
      j.append({ actor: "t/x", epoch, expectedSeq: 1, events: [ev("2")] }),
      j.read("t/x", 1, 10),
      j.reply("t/x", "k"),
      j.dueReminders(0, 10),
      j.nextReminder(),
      j.deleteReminder("r"),
    ];
    for (const p of calls) await rejectsWith(p, "closed");
  });
}
