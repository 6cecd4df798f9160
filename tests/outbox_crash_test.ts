/**
 * The transactional outbox across `kill -9`, on a real nats-server (JetStream) and a libSQL
 * file journal shared by two processes: a node process runs turns that emit an event and
 * `ctx.publish(…, { durable: true })` (some of them throw after publishing: those do not
 * commit), the test kills it with SIGKILL in the middle of the load, and another node on the
 * same journal and NATS starts with a durable subscriber. Every acknowledged turn's message
 * is delivered, once (the outbox's message id is JetStream's `Nats-Msg-Id`: a message the dead
 * node published but had not yet deleted from its outbox, and which the sweep publishes again,
 * is stored once); no message of a failed turn is ever delivered; every message delivered
 * belongs to a turn whose event is in the journal, and every turn in the journal has its
 * message delivered.
 *
 * The node process holds each durable publish 500 ms before and after storing it
 * (`OUTBOX_HOLD_MS`, see tests/nodes/outbox_node.ts), so that at the kill its outbox still
 * holds the messages of its last turns (some published, some not), whatever the machine's
 * speed: the test asserts there are some, so the sweep path is always exercised.
 */
import assert from "node:assert/strict";
import { createSystem, type Delivery, type System } from "../mod.ts";
import type { Journal } from "../spi.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { startNatsCluster, startNodeProcess } from "../adapters/testing/mod.ts";
import { Orders, type Placed } from "./nodes/outbox_orders.ts";
import { waitFor } from "./helpers.ts";

const NODE = new URL("./nodes/outbox_node.ts", import.meta.url);
/** Lease TTL of every node: the dead node's sweeper election lapses after about this. */
const TTL = 1500;
/** Acknowledged turns before the kill. */
const TARGET = 400;
/** Messages the node forwards itself (and deletes from its outbox) before the kill, at least. */
const FORWARDED = 100;
/** Calls in flight at once. */
const WORKERS = 8;
/** Every FAIL_EVERY-th call is `placeThenFail`. */
const FAIL_EVERY = 5;

/** The ids of the messages in the journal's outboxes. */
async function outboxIds(journal: Journal): Promise<string[]> {
  const ids: string[] = [];
  for (let s = 0; s < journal.shards; s++) {
    for (const m of await journal.readOutbox(s, 10_000)) ids.push(m.id);
  }
  return ids;
}

Deno.test("outbox across kill -9 (NATS + libSQL): every acknowledged turn's message delivered once, none of a failed or unlogged turn", async () => {
  const dir = await Deno.makeTempDir({ prefix: "troupe-outbox-crash-" });
  const url = `file:${dir}/outbox.db`;
  const prefix = `ob${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`;
  const nats = await startNatsCluster({ servers: 1, websocket: false });
  const meshOf = () => natsMesh({ servers: nats.urls[0]!, prefix, leaseTtl: TTL });
  let journal: Journal | undefined;
  let client: System | undefined;
  let b: System | undefined;
  const child = await startNodeProcess({
    script: NODE,
    env: {
      TROUPE_SERVERS: nats.urls[0]!,
      TROUPE_JOURNAL: url,
      TROUPE_NODE: "a",
      TROUPE_PREFIX: prefix,
      TROUPE_LEASE_TTL: String(TTL),
      OUTBOX_HOLD_MS: "500",
    },
    readyTimeout: 30_000,
  }).catch(async (err) => {
    await nats.stop();
    throw err;
  });
  try {
    journal = libsqlJournal({ url });
    client = await createSystem({
      actors: [],
      journal,
      mesh: meshOf(),
      node: "client",
      leaseTtl: TTL,
      logger: "silent",
    });
    const c = client;
    await waitFor(
      () => c.directory.nodes().some((n) => n.id === "a"),
      10_000,
      "the client to see a",
    );

    // The load: WORKERS calls in flight, each number n once; every FAIL_EVERY-th fails.
    const acked = new Set<number>();
    const failing = new Set<number>(); // sent as placeThenFail, whatever came back
    const unknown = new Set<number>(); // no answer, or another error: may or may not be in
    let next = 0;
    let stopped = false;
    const worker = async () => {
      while (!stopped) {
        const n = next++;
        const ref = c.ref(Orders, `o${n % 16}`);
        if (n % FAIL_EVERY === 0) {
          failing.add(n);
          await ref.ask("placeThenFail", n, { timeout: 3_000 }).catch(() => {});
          continue;
        }
        try {
          assert.equal(await ref.ask("place", n, { timeout: 3_000 }), n);
          acked.add(n);
        } catch {
          unknown.add(n);
        }
      }
    };
    const workers = Array.from({ length: WORKERS }, worker);
    // Kill once enough turns are acknowledged and the node has forwarded (and deleted from its
    // outbox) some of their messages itself: it then dies with messages in all three states.
    const j = journal;
    const outboxSize = async () => (await outboxIds(j)).length;
    await waitFor(
      async () => acked.size >= TARGET && acked.size - (await outboxSize()) >= FORWARDED,
      15_000,
      `${TARGET} acknowledged turns, ${FORWARDED} of them forwarded by their node`,
    );
    child.kill("SIGKILL"); // mid-load: WORKERS calls in flight
    stopped = true;
    const status = await child.exited;
    const killedAt = Date.now();
    assert.equal(status.signal, "SIGKILL");
    const left = new Set(await outboxIds(journal));
    assert.ok(left.size > 0, "the killed node left messages in its outbox (the sweep sends them)");

    // Another node on the same journal and NATS, with a durable subscriber from the start.
    b = await createSystem({
      actors: [Orders],
      journal,
      mesh: meshOf(),
      node: "b",
      leaseTtl: TTL,
      logger: "silent",
    });
    const got: { p: Placed & { end?: true }; d: Delivery | undefined }[] = [];
    const sub = b.subscribe("orders.*", (p, _t, d) => void got.push({ p: p as Placed, d }), {
      durable: "billing",
      from: "all",
    });
    try {
      await sub.ready;
      await Promise.all(workers); // the calls in flight at the kill end (bounded by their timeout)
      const delivered = () => new Set(got.map((g) => g.p.n));
      // Bounded generously: the sweeper's election lapses with the dead node's lease (5 s), then
      // messages older than 2 s are swept; a loaded machine (the whole suite) stretches both.
      try {
        await waitFor(() => [...acked].every((n) => delivered().has(n)), 45_000, "messages");
      } catch {
        const have = delivered();
        const missing = [...acked].filter((n) => !have.has(n));
        throw new Error(
          `${missing.length} of ${acked.size} acknowledged turns' messages not delivered after 45 s (first: ${
            missing.slice(0, 10).join(", ")
          }; outbox now holds ${await outboxSize()})`,
        );
      }
      // Once the outbox is empty every stored message is in JetStream; a last message
      // published after that comes after all of them (one consumer, one at a time, in order).
      await waitFor(
        async () => (await outboxSize()) === 0,
        10_000,
        "the sweep to empty the outbox",
      );
      await b.publish("orders.end", { id: "end", n: -1, end: true }, { durable: true });
      await waitFor(() => got.some((g) => g.p.end), 10_000, "the last message");

      // The turns the journal logged: their events, read back through the feed.
      const logged = new Set<number>();
      for await (const e of b.feed(Orders, { live: false })) {
        logged.add((e.payload as { n: number }).n);
      }
      const messages = got.filter((g) => !g.p.end);
      const ns = messages.map((g) => g.p.n);
      const duplicates = ns.length - new Set(ns).size;
      const idDuplicates = messages.length - new Set(messages.map((g) => g.d?.id)).size;
      for (const n of acked) assert.ok(logged.has(n), `acknowledged turn ${n} is in the journal`);
      for (const n of failing) assert.ok(!logged.has(n), `failed turn ${n} is not in the journal`);
      assert.ok(messages.every((g) => !g.p.failed), "no message of a failed turn is delivered");
      for (const n of ns) assert.ok(logged.has(n), `message ${n} belongs to a logged turn`);
      for (const n of logged) assert.ok(ns.includes(n), `logged turn ${n} has its message`);
      assert.equal(duplicates, 0, "each message delivered once (its id deduplicates resends)");
      assert.equal(idDuplicates, 0);
      assert.ok(messages.every((g) => g.d?.attempt === 1), "each delivered at the first attempt");
      const inFlight = [...logged].filter((n) => !acked.has(n)).length;
      // Of the messages left in the outbox, those JetStream had stored before the kill: the
      // sweep sent them again, and their id made JetStream keep the first copy only.
      const resent = messages.filter((g) =>
        left.has(g.d!.id!) && g.d!.publishedAt.getTime() <= killedAt
      ).length;
      console.log(
        `${acked.size} acknowledged, ${failing.size} failed, ${unknown.size} unanswered ` +
          `(${inFlight} of them committed); at the kill ${left.size} messages were in the ` +
          `outbox (${resent} of them already published: resent by the sweep, deduplicated); ` +
          `${messages.length} delivered, ${duplicates} duplicates`,
      );
    } finally {
      sub.unsubscribe();
    }
  } finally {
    child.kill("SIGKILL");
    await child.exited;
    await b?.close();
    await client?.close();
    await journal?.close();
    await nats.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
