/**
 * Durable pub/sub through the public API (`publish(…, { durable: true })`,
 * `subscribe(…, { durable })`), on the in-process mesh and on a real nats-server (JetStream):
 * messages wait for a subscriber that is not running, redelivery while the handler throws and
 * then the dead letter, one durable name shared by two nodes, `from`, dedup ids, topic rules,
 * and a node that stops while it holds a message.
 */
import assert from "node:assert/strict";
import { createSystem, type Delivery, type System } from "../mod.ts";
import type { Mesh, MeshConnection } from "../spi.ts";
import { inProcessMesh } from "../src/mesh/in_process.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { AUDIENCE, ISSUER, issuer } from "./auth_fixtures.ts";
import { within } from "./helpers.ts";

// One server for every NATS test of this file: started at load (outside the tests' sanitizers),
// stopped by the last test. Each test uses a prefix of its own (its own stream and consumers).
const nats = await startNatsCluster({ servers: 1, websocket: false });

interface Got {
  payload: unknown;
  topic: string;
  delivery: Delivery | undefined;
  node: string;
}

/** What handlers saw, with bounded waits on a condition. */
function recorder(waitMs = 10_000) {
  const got: Got[] = [];
  const waiters = new Set<{ ok(): boolean; done(): void }>();
  return {
    got,
    on(node: string, fn?: (p: unknown, d: Delivery | undefined) => void | Promise<void>) {
      return (payload: unknown, topic: string, delivery: Delivery | undefined) => {
        got.push({ payload, topic, delivery, node });
        for (const w of waiters) if (w.ok()) (waiters.delete(w), w.done());
        return fn?.(payload, delivery);
      };
    },
    async until(ok: () => boolean, what: string): Promise<void> {
      if (ok()) return;
      try {
        await within(new Promise<void>((done) => waiters.add({ ok, done })), waitMs, what);
      } catch (err) {
        const seen = JSON.stringify(got.map((g) => [g.payload, g.delivery?.attempt]));
        throw new Error(`${(err as Error).message} (got ${seen})`);
      }
    },
    payloads: () => got.map((g) => g.payload),
  };
}

function suite(name: string, makeMesh: () => Mesh): void {
  const test = (title: string, fn: (mesh: Mesh, start: () => Promise<System>) => Promise<void>) =>
    Deno.test({
      name: `${name}: ${title}`,
      sanitizeOps: true,
      sanitizeResources: true,
      async fn() {
        const mesh = makeMesh();
        const systems: System[] = [];
        try {
          await fn(mesh, async () => {
            const s = await createSystem({
              mesh,
              logger: (Deno.env.get("LOG") ?? "silent") as "silent",
            });
            systems.push(s);
            return s;
          });
        } finally {
          await Promise.all(systems.map((s) => s.close()));
        }
      },
    });

  test(
    "messages published while no durable subscriber runs are delivered when one starts",
    async (_mesh, start) => {
      const a = await start();
      const first = recorder();
      const sub = a.subscribe("orders.*", first.on(a.node), { durable: "billing" });
      await sub.ready; // the consumer exists from here on
      await a.publish("orders.created", 1, { durable: true });
      await first.until(() => first.got.length === 1, "the first message");
      await a.close(); // the node stops: nothing consumes "billing" now
      const b = await start();
      for (const n of [2, 3, 4]) await b.publish("orders.created", n, { durable: true });
      const c = await start(); // another node (a restart of the first one, say)
      const later = recorder();
      const again = c.subscribe("orders.*", later.on(c.node), { durable: "billing" });
      await again.ready;
      await later.until(() => later.got.length === 3, "the messages stored meanwhile");
      assert.deepEqual(first.payloads(), [1]);
      assert.deepEqual(later.payloads(), [2, 3, 4]); // in order, one subscriber, none failed
      assert.ok(later.got.every((g) => g.topic === "orders.created" && g.delivery?.attempt === 1));
    },
  );

  test(
    "from 'all' gets what was stored before the consumer existed; 'new' (the default) does not",
    async (_mesh, start) => {
      const s = await start();
      await s.publish("audit.login", "old", { durable: true });
      const all = recorder();
      const fresh = recorder();
      const subAll = s.subscribe("audit.>", all.on(s.node), { durable: "all", from: "all" });
      const subNew = s.subscribe("audit.>", fresh.on(s.node), { durable: "fresh" });
      await Promise.all([subAll.ready, subNew.ready]);
      await s.publish("audit.logout", "new", { durable: true });
      await all.until(() => all.got.length === 2, "both messages");
      await fresh.until(() => fresh.got.length === 1, "the new message");
      assert.deepEqual(all.payloads(), ["old", "new"]);
      assert.deepEqual(fresh.payloads(), ["new"]);
    },
  );

  test(
    "a handler that throws gets the message again with backoff, then it moves to dead.<topic>",
    async (_mesh, start) => {
      const s = await start();
      const tries = recorder();
      const dead = recorder();
      const failing = s.subscribe(
        "orders.*",
        tries.on(s.node, (p) => {
          if (p !== "fine") throw new Error(`cannot bill ${p}`);
        }),
        { durable: "billing", maxDeliver: 3, backoff: [50, 100] },
      );
      const ops = s.subscribe("dead.orders.>", dead.on(s.node), { durable: "ops", from: "all" });
      await Promise.all([failing.ready, ops.ready]);
      const t0 = performance.now();
      await s.publish("orders.created", "broken", { durable: true, id: "order-7" });
      await dead.until(() => dead.got.length === 1, "the dead letter");
      const elapsed = performance.now() - t0;
      const attempts = tries.got.filter((g) => g.payload === "broken");
      assert.deepEqual(attempts.map((g) => g.delivery?.attempt), [1, 2, 3]);
      assert.ok(attempts.every((g) => g.delivery?.id === "order-7"));
      assert.ok(elapsed >= 50 + 100 - 20, `backoff between attempts: ${Math.round(elapsed)} ms`);
      const letter = dead.got[0]!;
      assert.equal(letter.payload, "broken");
      assert.equal(letter.topic, "dead.orders.created");
      assert.deepEqual(
        { ...letter.delivery!.deadLetter!, error: undefined },
        { topic: "orders.created", durable: "billing", attempts: 3, error: undefined },
      );
      assert.match(letter.delivery!.deadLetter!.error, /cannot bill broken/);
      // later messages still go through
      await s.publish("orders.created", "fine", { durable: true });
      await tries.until(() => tries.got.some((g) => g.payload === "fine"), "the next message");
      assert.equal(tries.got.filter((g) => g.payload === "broken").length, 3);
    },
  );

  test(
    "a handler that fails twice and then succeeds: three attempts, no dead letter",
    async (_mesh, start) => {
      const s = await start();
      const tries = recorder();
      let left = 2;
      const sub = s.subscribe(
        "jobs.run",
        tries.on(s.node, (p) => {
          if (p === "job" && left-- > 0) throw new Error("not yet");
        }),
        { durable: "runner", maxDeliver: 3, backoff: [20] },
      );
      const dead = recorder();
      const ops = s.subscribe("dead.>", dead.on(s.node), { durable: "ops" });
      await Promise.all([sub.ready, ops.ready]);
      await s.publish("jobs.run", "job", { durable: true });
      await s.publish("jobs.run", "marker", { durable: true });
      await tries.until(() => tries.got.some((g) => g.payload === "marker"), "the marker");
      await tries.until(() => tries.got.filter((g) => g.payload === "job").length === 3, "3 tries");
      assert.deepEqual(
        tries.got.filter((g) => g.payload === "job").map((g) => g.delivery?.attempt),
        [1, 2, 3],
      );
      assert.equal(dead.got.length, 0);
    },
  );

  test("one durable name shared by two nodes delivers each message once", async (_mesh, start) => {
    const [a, b, publisher] = [await start(), await start(), await start()];
    const rec = recorder();
    const subs = [a, b].map((s) =>
      s.subscribe("work.*", rec.on(s.node), { durable: "workers", concurrency: 2 })
    );
    await Promise.all(subs.map((s) => s.ready));
    const n = 40;
    await Promise.all(
      Array.from({ length: n }, (_, i) => publisher.publish("work.item", i, { durable: true })),
    );
    await rec.until(() => new Set(rec.payloads()).size === n, `${n} distinct messages`);
    assert.equal(rec.got.length, n, "each message once");
    assert.deepEqual(new Set(rec.payloads()), new Set(Array.from({ length: n }, (_, i) => i)));
  });

  test(
    "a message published twice with one id is stored and delivered once",
    async (_mesh, start) => {
      const s = await start();
      const rec = recorder();
      const sub = s.subscribe("pay.*", rec.on(s.node), { durable: "ledger" });
      await sub.ready;
      await s.publish("pay.done", { amount: 5 }, { durable: true, id: "payment-1" });
      await s.publish("pay.done", { amount: 5 }, { durable: true, id: "payment-1" }); // a resend
      await s.publish("pay.done", "marker", { durable: true });
      await rec.until(() => rec.payloads().includes("marker"), "the marker");
      assert.deepEqual(rec.payloads(), [{ amount: 5 }, "marker"]);
      assert.equal(rec.got[0]!.delivery?.id, "payment-1");
      assert.ok(typeof rec.got[1]!.delivery?.id === "string", "a random id when none is given");
    },
  );

  test("plain subscribers get durable messages too, live", async (_mesh, start) => {
    const s = await start();
    const rec = recorder();
    const plain = s.subscribe("news.*", rec.on(s.node));
    await plain.ready;
    await s.publish("news.today", "stored", { durable: true });
    await s.publish("news.today", "live");
    await rec.until(() => rec.got.length === 2, "both");
    assert.deepEqual(new Set(rec.payloads()), new Set(["stored", "live"]));
    assert.ok(rec.got.every((g) => g.delivery === undefined));
  });

  test(
    "a message a node held when it stopped is delivered again to another node",
    async (mesh, start) => {
      const a = await createSystem({ mesh, logger: "silent", drainTimeout: 100 });
      const b = await start();
      let release!: () => void;
      const stuck = new Promise<void>((r) => release = r);
      const rec = recorder();
      const options = { durable: "slow", ackWait: 500 };
      const subA = a.subscribe("tasks.*", rec.on(a.node, () => stuck), options);
      await subA.ready;
      await b.publish("tasks.one", "task", { durable: true });
      await rec.until(() => rec.got.length === 1, "node a to take it");
      await a.close(); // its handler is still running: abandoned after drainTimeout
      const subB = b.subscribe("tasks.*", rec.on(b.node), options);
      await subB.ready;
      await rec.until(() => rec.got.length === 2, "the redelivery");
      release();
      assert.deepEqual(rec.got.map((g) => [g.node, g.delivery?.attempt]), [
        [a.node, 1],
        [b.node, 2],
      ]);
    },
  );

  test("bad options and topics are refused at once", async (_mesh, start) => {
    const s = await start();
    const h = () => {};
    assert.throws(() => s.subscribe("x", h, { durable: "a.b" }), TypeError);
    assert.throws(() => s.subscribe("x", h, { durable: "a", group: "g" }), TypeError);
    assert.throws(() => s.subscribe("x", h, { durable: "a", maxDeliver: 0 }), RangeError);
    assert.throws(() => s.subscribe("x", h, { durable: "a", from: new Date(NaN) }), TypeError);
    assert.throws(() => s.subscribe("x..y", h, { durable: "a" }), TypeError);
    await assert.rejects(s.publish("a.*", 1, { durable: true }), TypeError);
    await assert.rejects(s.publish("a", 1, { durable: true, id: "" }), TypeError);
    await assert.rejects(s.publish("a", 1, { id: "x" }), TypeError); // an id without durable
  });
}

suite("durable pub/sub (in-process mesh)", () => inProcessMesh());
suite(
  "durable pub/sub (nats)",
  () => natsMesh({ servers: nats.urls, prefix: `d${crypto.randomUUID().slice(0, 8)}` }),
);

Deno.test("durable pub/sub: topic rules apply to durable publish and subscribe", async () => {
  const idp = await issuer();
  const system = await createSystem({
    logger: "silent",
    auth: {
      keys: [idp.jwk],
      algorithms: ["ES256"],
      issuer: ISSUER,
      audience: AUDIENCE,
      topics: [{ topic: "orders.>", publish: "role:shop", subscribe: "role:billing" }],
    },
  });
  try {
    const shop = await idp.sign({ sub: "shop", roles: ["shop"] });
    const billing = await idp.sign({ sub: "b", roles: ["billing"] });
    const nobody = await idp.sign({ sub: "n" });
    const rec = recorder();
    const refused = system.subscribe("orders.*", rec.on("x"), { durable: "x", token: nobody });
    await assert.rejects(refused.ready, { code: "forbidden" });
    const bad = system.subscribe("orders.*", rec.on("x"), { durable: "y", token: "junk" });
    await assert.rejects(bad.ready, { code: "unauthorized" });
    const ok = system.subscribe("orders.*", rec.on("ok"), {
      durable: "billing",
      from: "all",
      token: billing,
    });
    await ok.ready;
    await assert.rejects(system.publish("orders.new", 1, { durable: true, token: nobody }), {
      code: "forbidden",
    });
    await system.publish("orders.new", 2, { durable: true, token: shop });
    await rec.until(() => rec.got.length === 1, "the allowed message");
    assert.deepEqual(rec.got.map((g) => [g.node, g.payload]), [["ok", 2]]);
  } finally {
    await system.close();
  }
});

Deno.test("durable pub/sub: a mesh without durable topics says so (unavailable)", async () => {
  const inner = inProcessMesh();
  const mesh: Mesh = {
    kind: "no-durable",
    leaseTtl: inner.leaseTtl,
    prefix: inner.prefix,
    async connect(o) {
      const c = await inner.connect(o);
      // every member but durableTopics
      const bare: MeshConnection = {
        maxPayload: c.maxPayload,
        publish: (s, d, p) => c.publish(s, d, p),
        request: (s, d, p) => c.request(s, d, p),
        subscribe: (s, h, p) => c.subscribe(s, h, p),
        inbox: () => c.inbox(),
        flush: () => c.flush(),
        kv: (b, p) => c.kv(b, p),
        onStatus: (l) => c.onStatus(l),
        close: () => c.close(),
      };
      return bare;
    },
  };
  const system = await createSystem({ mesh, logger: "silent" });
  try {
    await assert.rejects(system.publish("a", 1, { durable: true }), (err: Error) => {
      assert.equal((err as { code?: string }).code, "unavailable");
      assert.match(err.message, /no durable topics/);
      return true;
    });
    const sub = system.subscribe("a", () => {}, { durable: "x" });
    await assert.rejects(sub.ready, { code: "unavailable" });
  } finally {
    await system.close();
  }
});

Deno.test("durable_pubsub_test: stop the shared server", async () => {
  await nats.stop();
});
