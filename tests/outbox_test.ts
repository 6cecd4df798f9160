/**
 * The transactional outbox (`ctx.publish(topic, payload, { durable: true })`), through the
 * public API on the in-process mesh: a message is delivered to durable subscribers if and only
 * if its turn commits; a node that stored messages but could not forward them (it died between
 * the commit and the publish) leaves them to the elected sweeper of another node; forwarded
 * messages leave the journal. (The same over NATS and libSQL with `kill -9`:
 * tests/outbox_crash_test.ts.)
 */
import assert from "node:assert/strict";
import {
  ActorError,
  createSystem,
  defineActor,
  type Delivery,
  memoryJournal,
  type System,
} from "../mod.ts";
import type { Journal, Mesh } from "../spi.ts";
import { withDurablePublish } from "./_durable_publish.ts";
import { inProcessMesh } from "../src/mesh/in_process.ts";
import { within } from "./helpers.ts";

const orders = defineActor({
  name: "orders",
  initialState: () => ({ placed: 0 }),
  events: { placed: (s, e: { amount: number }) => ({ placed: s.placed + e.amount }) },
  handlers: {
    place(ctx, amount: number) {
      ctx.emit("placed", { amount });
      ctx.publish("orders.placed", { id: ctx.id, amount }, { durable: true });
      return ctx.state.placed;
    },
    /** Publishes, then fails: the turn does not commit. */
    placeThenFail(ctx, amount: number) {
      ctx.emit("placed", { amount });
      ctx.publish("orders.placed", { id: ctx.id, amount, failed: true }, { durable: true });
      if (amount > 0) throw new ActorError("payment refused", { code: "payment_refused" });
      return ctx.state.placed;
    },
  },
});

/** Received payloads, with a bounded wait on a condition. */
function inbox() {
  const got: { payload: unknown; delivery: Delivery | undefined; node: string }[] = [];
  let wake = () => {};
  return {
    got,
    on: (node: string) => (payload: unknown, _topic: string, delivery?: Delivery) => {
      got.push({ payload, delivery, node });
      wake();
    },
    async until(ok: () => boolean, what: string) {
      while (!ok()) {
        await within(new Promise<void>((r) => wake = r), 10_000, what);
      }
    },
  };
}

async function outboxSize(journal: Journal): Promise<number> {
  let n = 0;
  for (let s = 0; s < journal.shards; s++) n += (await journal.readOutbox(s, 1000)).length;
  return n;
}

/** Polls (a macrotask apart) until the journal's outboxes are empty, at most 10 s. */
async function outboxDrained(journal: Journal): Promise<void> {
  const end = Date.now() + 10_000;
  while ((await outboxSize(journal)) > 0) {
    if (Date.now() > end) throw new Error("the outbox still holds messages after 10 s");
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("outbox: a durable ctx.publish reaches durable subscribers once, if and only if its turn commits", async () => {
  const journal = memoryJournal();
  const system = await createSystem({ actors: [orders], journal, logger: "silent" });
  try {
    const rec = inbox();
    const sub = system.subscribe("orders.*", rec.on("n"), { durable: "billing", from: "all" });
    await sub.ready;
    const alice = system.ref(orders, "alice");
    assert.equal(await alice.ask("place", 5), 5);
    await assert.rejects(alice.ask("placeThenFail", 7), /payment refused/);
    assert.equal(await alice.ask("place", 2), 7); // the failed turn's event is not there either
    await system.ref(orders, "bob").ask("place", 1);
    await rec.until(() => rec.got.length >= 3, "the three committed orders");
    await outboxDrained(journal);
    // Forwarded messages are gone from the journal, so nothing can arrive later: what came is all.
    const seen = rec.got.map((g) => g.payload as { id: string; amount: number; failed?: true });
    assert.deepEqual(
      seen.map((p) => `${p.id}:${p.amount}`).sort(),
      ["alice:2", "alice:5", "bob:1"],
    );
    assert.ok(seen.every((p) => !p.failed), "a message of a turn that failed was published");
    assert.ok(rec.got.every((g) => g.delivery?.attempt === 1), "each delivered once");
    sub.unsubscribe();
  } finally {
    await system.close();
  }
});

/** A mesh whose connections cannot store durable messages (a node that dies before forwarding). */
const failingDurablePublish = (inner: Mesh) =>
  withDurablePublish(
    inner,
    () => () => Promise.reject(new Error("this node died before forwarding")),
  );

Deno.test("outbox: what a node committed but never forwarded, the elected sweeper of another node forwards, once", async () => {
  const mesh = inProcessMesh();
  const journal = memoryJournal();
  let a: System | undefined;
  let b: System | undefined;
  try {
    a = await createSystem({
      node: "a",
      actors: [orders],
      journal,
      mesh: failingDurablePublish(mesh),
      logger: "silent",
    });
    // the ask is served on a: its turn commits, its message stays stored
    assert.equal(await a.ref(orders, "carol").ask("place", 3), 3);
    assert.equal(await outboxSize(journal), 1, "the committed message is in the outbox");
    await a.close(); // a is gone without having forwarded it
    a = undefined;
    assert.equal(await outboxSize(journal), 1, "a's closing did not forward it either");

    b = await createSystem({ node: "b", actors: [orders], journal, mesh, logger: "silent" });
    const rec = inbox();
    const sub = b.subscribe("orders.*", rec.on("b"), { durable: "billing", from: "all" });
    await sub.ready;
    await rec.until(() => rec.got.length >= 1, "the swept message");
    await outboxDrained(journal);
    assert.deepEqual(rec.got.map((g) => g.payload), [{ id: "carol", amount: 3 }]);
    sub.unsubscribe();
  } finally {
    await a?.close();
    await b?.close();
  }
});
