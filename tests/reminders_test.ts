/**
 * Durable reminders: failed firings are retried with backoff (never dropped), and the
 * reminder service moves to another node when its elected node closes. On a virtual clock:
 * the backoff, the polls and the leases run at exact times, moved by the test.
 */
import assert from "node:assert/strict";
import { advanceUntil } from "./helpers.ts";
import { createSystem, defineActor, inProcessMesh, memoryJournal } from "../mod.ts";
import { startSystems, virtualClock } from "../adapters/testing/mod.ts";
import { encodeToken } from "../src/mesh/subject.ts";
import { reminderRetryDelay, RETRY_FIRST_MS, RETRY_MAX_MS } from "../src/actor/reminders.ts";

/** Handler calls by actor id: `ring` throws a plain `Error` while `failures[id]` > 0. */
const calls = new Map<string, number>();
const failures = new Map<string, number>();

const Alarm = defineActor({
  name: "alarm",
  initialState: () => ({ rang: 0 }),
  events: { set: (s) => s, rang: (s) => ({ rang: s.rang + 1 }) },
  handlers: {
    set(ctx, ms: number) {
      ctx.emit("set", undefined);
      ctx.schedule(ms, "ring", ms);
    },
    ring(ctx) {
      calls.set(ctx.id, (calls.get(ctx.id) ?? 0) + 1);
      const left = failures.get(ctx.id) ?? 0;
      if (left > 0) {
        failures.set(ctx.id, left - 1);
        throw new Error("the bell is stuck"); // the caller sees code "internal"
      }
      ctx.emit("rang", undefined);
    },
    rang: (ctx) => ctx.state.rang,
  },
});

/** Another type, so that a node hosting only it runs the reminder service. */
const Other = defineActor({
  name: "other",
  initialState: () => 0,
  events: {},
  handlers: { ping: () => "pong" },
});

Deno.test("reminderRetryDelay() grows exponentially up to a minute", () => {
  assert.equal(reminderRetryDelay(1, 1), RETRY_FIRST_MS);
  assert.equal(reminderRetryDelay(2, 1), 2 * RETRY_FIRST_MS);
  assert.equal(reminderRetryDelay(3, 0), 2 * RETRY_FIRST_MS); // jitter: down to a half
  assert.equal(reminderRetryDelay(40, 1), RETRY_MAX_MS);
  assert.equal(reminderRetryDelay(1000, 1), RETRY_MAX_MS);
});

Deno.test("a reminder whose handler throws a plain Error is retried and applied once", async () => {
  const clock = virtualClock();
  const journal = memoryJournal({ now: clock.now });
  const system = await createSystem({ actors: [Alarm], journal, logger: "silent", clock });
  try {
    failures.set("flaky", 2);
    await system.ref(Alarm, "flaky").ask("set", 50);
    await clock.advance(50);
    assert.equal(calls.get("flaky"), 1, "fired when due, and failed");
    // fails twice (backoff 125-250 ms, then 250-500 ms), then applies
    const took = await advanceUntil(
      clock,
      async () => (await system.ref(Alarm, "flaky").ask("rang")) === 1,
      5000,
      "rang",
    );
    assert.ok(took >= 125 + 250 && took <= 250 + 500 + 1000, `applied after ${took} ms`);
    assert.equal(calls.get("flaky"), 3, "two failures, one success");
    assert.equal(await journal.nextReminder(), undefined, "deleted once it succeeded");
    await clock.advance(60_000); // a minute of polls: nothing fires again
    assert.equal(calls.get("flaky"), 3);
    assert.equal(await system.ref(Alarm, "flaky").ask("rang"), 1);
  } finally {
    await system.close();
    await journal.close();
  }
});

Deno.test("a reminder for a type no node hosts yet is kept until a host starts", async () => {
  const clock = virtualClock();
  const journal = memoryJournal({ now: clock.now });
  const mesh = inProcessMesh({ leaseTtl: 1000, clock });
  const options = { journal, mesh, logger: "silent" as const, clock };
  const first = await createSystem({ actors: [Alarm], node: "a", ...options });
  await first.ref(Alarm, "cold").ask("set", 300);
  await first.close();
  // A node that hosts only "other" fires it: unknown_actor_type, since nobody hosts "alarm".
  const other = await createSystem({ actors: [Other], node: "b", ...options });
  let host: Awaited<ReturnType<typeof createSystem>> | undefined;
  try {
    await clock.advance(1000);
    assert.equal(calls.get("cold") ?? 0, 0);
    assert.notEqual(await journal.nextReminder(), undefined, "kept after failing");
    host = await createSystem({ actors: [Alarm], node: "c", ...options });
    await advanceUntil(
      clock,
      async () => (await host!.ref(Alarm, "cold").ask("rang")) === 1,
      5000,
      "rang",
    );
    assert.equal(calls.get("cold"), 1);
    await clock.advance(0);
    assert.equal(await journal.nextReminder(), undefined, "deleted");
  } finally {
    await host?.close();
    await other.close();
    await journal.close();
  }
});

Deno.test("when the reminder leader closes, another node fires the due reminders", async () => {
  const clock = virtualClock();
  const mesh = inProcessMesh({ leaseTtl: 1000, clock });
  await using cluster = await startSystems({
    actors: [Alarm],
    mesh,
    system: { logger: "silent", clock },
  });
  const admin = await mesh.connect({ node: "admin", clock });
  try {
    const leases = await admin.kv(`${mesh.prefix}_leases`);
    const key = encodeToken(`${mesh.prefix}-reminders`);
    const leader = async () => {
      const e = await leases.get(key);
      return e ? (JSON.parse(new TextDecoder().decode(e.value)) as { holder: string }).holder : "";
    };
    await clock.advance(0);
    assert.notEqual(await leader(), "", "a reminder leader, elected at once");
    const before = await leader();
    const ids = ["r1", "r2", "r3"];
    for (const id of ids) await cluster.client.ref(Alarm, id).ask("set", 600);
    const node = cluster.nodes.find((s) => s.node === before);
    assert.ok(node, `leader ${before} is one of the nodes`);
    await node.close(); // before the reminders are due
    await advanceUntil(
      clock,
      async () => {
        for (const id of ids) {
          if ((await cluster.client.ref(Alarm, id).ask("rang")) !== 1) return false;
        }
        return true;
      },
      5000,
      "every reminder fired",
    );
    assert.ok(clock.monotonic() >= 600, "not before they were due");
    const after = await leader();
    assert.ok(after !== "" && after !== before, `a new leader (${after}) took over`);
    for (const id of ids) assert.equal(calls.get(id), 1, `${id} applied once`);
  } finally {
    await admin.close();
  }
});

Deno.test("only the elected reminder node prunes idempotency records", async () => {
  const clock = virtualClock();
  const mesh = inProcessMesh({ leaseTtl: 1000, clock });
  // Records are stored two days in the past: the first prune drops them.
  const journal = memoryJournal({ now: () => clock.now() - 2 * 24 * 60 * 60 * 1000 });
  const prunes = new Map<string, number>();
  /** The shared journal, counting the prunes made through this node's copy. */
  const counted = (node: string): typeof journal =>
    new Proxy(journal, {
      get(target, prop) {
        if (prop === "pruneIdempotency") {
          return (now: number) => {
            prunes.set(node, (prunes.get(node) ?? 0) + 1);
            return target.pruneIdempotency(now);
          };
        }
        if (prop === "close") return () => Promise.resolve(); // closed once, below
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  const nodes = await Promise.all(
    ["a", "b", "c"].map((node) =>
      createSystem({
        actors: [Alarm],
        journal: counted(node),
        mesh,
        node,
        logger: "silent",
        clock,
      })
    ),
  );
  try {
    await nodes[0]!.ref(Alarm, "p1").ask("set", 3_600_000, { idempotencyKey: "once" });
    // Keys reach the journal scoped by caller: `a:<key>` for an anonymous caller.
    assert.ok(await journal.reply("alarm/p1", "a:once"), "the record is stored");
    await advanceUntil(
      clock,
      async () => (await journal.reply("alarm/p1", "a:once")) === undefined,
      5000,
      "the old record pruned",
    );
    await clock.advance(3 * 60_000); // three more minutes: pruned once a minute, by one node
    assert.equal(prunes.size, 1, `one node pruned: ${JSON.stringify([...prunes])}`);
    assert.equal([...prunes.values()][0], 4, "at start, then once a minute");
  } finally {
    for (const s of nodes) await s.close();
    await journal.close();
  }
});

Deno.test("the runtime's own elections (reminders, outbox) hold leases as long as the node's, not the 5 s default", async () => {
  // Other nodes judge a silent leader by the time to live in its lease record: with the node's
  // leaseTtl there, reminders fire and the outbox drains again as soon as a dead node's actors
  // move, not seconds later.
  const clock = virtualClock();
  const mesh = inProcessMesh({ leaseTtl: 1200, clock });
  await using cluster = await startSystems({
    actors: [Alarm],
    mesh,
    nodes: 1,
    system: { logger: "silent", clock },
  });
  const admin = await mesh.connect({ node: "admin", clock });
  try {
    const leases = await admin.kv(`${mesh.prefix}_leases`);
    const ttlOf = async (name: string) => {
      const e = await leases.get(encodeToken(`${mesh.prefix}-${name}`));
      return e ? (JSON.parse(new TextDecoder().decode(e.value)) as { ttl: number }).ttl : 0;
    };
    await advanceUntil(clock, async () => (await ttlOf("outbox")) > 0, 5000, "outbox leader");
    await advanceUntil(clock, async () => (await ttlOf("reminders")) > 0, 5000, "reminder leader");
    assert.equal(await ttlOf("reminders"), 1200);
    assert.equal(await ttlOf("outbox"), 1200);
    // a user's election keeps the documented default
    const mine = cluster.nodes[0]!.elect("mine");
    await mine.elected;
    const e = await leases.get(encodeToken("mine"));
    assert.ok(e, "the user's lease record");
    assert.equal((JSON.parse(new TextDecoder().decode(e.value)) as { ttl: number }).ttl, 5000);
    await mine.resign();
  } finally {
    await admin.close();
  }
});
