/**
 * The conformance suite of durable topics ({@link DurableTopics}, the optional capability of
 * a mesh connection): call {@link durableTopicsConformance} from a test file; it registers one
 * `Deno.test` per behaviour, with two connections (two nodes) of one mesh. Run by the
 * in-process mesh and by the NATS mesh (JetStream).
 *
 * Every wait is bounded, and every subject and consumer name carries a random suffix, so the
 * suite can run against a shared server. Checks that something does *not* happen use a later
 * marker that would come after it, never a sleep alone.
 *
 * @module
 */

import assert from "node:assert/strict";
import type {
  DurableConsumer,
  DurableConsumption,
  DurableMessage,
  DurableTopics,
  Mesh,
  MeshConnection,
} from "./types.ts";
import type { MeshFixture } from "./conformance.ts";

/**
 * Options of {@link durableTopicsConformance}.
 *
 * @example
 * ```ts
 * import type { DurableTopicsConformanceOptions } from "@troupe/troupe/spi";
 * const options: DurableTopicsConformanceOptions = { waitMs: 8000, ackWait: 1000 };
 * ```
 */
export interface DurableTopicsConformanceOptions {
  /** Bound, in ms, of every wait for a message. @default {5000} */
  waitMs?: number;
  /** The `ackWait` of consumers whose redelivery after it is tested, ms. @default {600} */
  ackWait?: number;
  /** Tests to register as ignored: those whose title contains one of these. @default {[]} */
  ignore?: readonly string[];
}

/**
 * Registers the durable topics conformance tests (`Deno.test`) under the prefix `name`. The
 * mesh's connections must offer `durableTopics()`.
 *
 * @example
 * ```ts ignore
 * import { durableTopicsConformance } from "@troupe/troupe/spi";
 * import { inProcessMesh } from "@troupe/troupe";
 *
 * durableTopicsConformance("in-process mesh", () =>
 *   Promise.resolve({ mesh: inProcessMesh(), cleanup: () => Promise.resolve() }));
 * ```
 */
export function durableTopicsConformance(
  name: string,
  setup: () => Promise<MeshFixture>,
  options: DurableTopicsConformanceOptions = {},
): void {
  const waitMs = options.waitMs ?? 5000;
  const ackWait = options.ackWait ?? 600;
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const bytes = (s: string) => enc.encode(s);
  const text = (b: Uint8Array) => dec.decode(b);

  interface Ctx {
    mesh: Mesh;
    a: MeshConnection;
    b: MeshConnection;
    da: DurableTopics;
    db: DurableTopics;
    /** A durable subject unique to this test (`<prefix>.d.conf.<id>`). */
    base: string;
    /** A consumer name unique to this test. */
    consumer: string;
  }

  function test(title: string, fn: (ctx: Ctx) => Promise<void>): void {
    Deno.test({
      name: `${name}: durable topics: ${title}`,
      ignore: (options.ignore ?? []).some((part) => title.includes(part)),
      sanitizeOps: true,
      sanitizeResources: true,
      async fn() {
        const { mesh, cleanup } = await setup();
        const id = crypto.randomUUID().replaceAll("-", "").slice(0, 10);
        const conns: MeshConnection[] = [];
        try {
          conns.push(await mesh.connect({ node: `dconf-a-${id}` }));
          conns.push(await mesh.connect({ node: `dconf-b-${id}` }));
          const [a, b] = conns as [MeshConnection, MeshConnection];
          assert.equal(typeof a.durableTopics, "function", "the mesh offers durable topics");
          await fn({
            mesh,
            a,
            b,
            da: a.durableTopics!(),
            db: b.durableTopics!(),
            base: `${mesh.prefix}.d.conf.${id}`,
            consumer: `conf_${id}`,
          });
        } finally {
          await Promise.allSettled(conns.map((c) => c.close()));
          await cleanup();
        }
      },
    });
  }

  /** A consumption's messages, with waits for a count or a condition. */
  function inbox() {
    const msgs: DurableMessage[] = [];
    const waiters = new Set<{ ok(): boolean; resolve(): void }>();
    return {
      msgs,
      handler(msg: DurableMessage) {
        msgs.push(msg);
        for (const w of waiters) {
          if (w.ok()) {
            waiters.delete(w);
            w.resolve();
          }
        }
      },
      until(ok: () => boolean, what: string): Promise<void> {
        if (ok()) return Promise.resolve();
        const p = new Promise<void>((resolve) => waiters.add({ ok, resolve }));
        return bounded(p, waitMs, `${what} (got ${describe(msgs)})`);
      },
      count(n: number): Promise<void> {
        return this.until(() => msgs.length >= n, `${n} messages`);
      },
    };
  }

  /** Consumes `c` with at most `maxInFlight` unsettled, acking each message into an inbox. */
  function acking(c: DurableConsumer, maxInFlight: number) {
    const got = inbox();
    const run = c.consume((m) => {
      got.handler(m);
      m.ack();
    }, { maxInFlight });
    return [got, run] as const;
  }

  /** Consumes `c`, acking each message, until the one whose data is "marker"; their texts. */
  async function ackedUntilMarker(c: DurableConsumer): Promise<string[]> {
    const [got, run] = acking(c, 4);
    try {
      await got.until(() => got.msgs.some((m) => text(m.data) === "marker"), "the marker");
      return got.msgs.map((m) => text(m.data));
    } finally {
      await run.stop();
    }
  }

  function describe(msgs: DurableMessage[]): string {
    return `[${msgs.map((m) => `${text(m.data)}#${m.deliveries}`).join(", ")}]`;
  }

  async function consumerOf(
    d: DurableTopics,
    config: { name: string; filter: string; from?: "all" | "new" | Date; ackWait?: number },
  ): Promise<DurableConsumer> {
    return await d.consumer({
      name: config.name,
      filter: config.filter,
      from: config.from ?? "all",
      ackWait: config.ackWait ?? 30_000,
    });
  }

  // --------------------------------------------------------------------------------- store

  test("publish resolves with increasing positions; a consumer from 'all' gets them in order, with their fields", async ({ da, base, consumer }) => {
    const t0 = Date.now();
    const r1 = await da.publish(`${base}.x`, bytes("one"), { headers: { "tr-k": "v" } });
    const r2 = await da.publish(`${base}.y`, bytes("two"), { id: `two-${consumer}` });
    assert.ok(r2.seq > r1.seq, `${r2.seq} > ${r1.seq}`);
    assert.equal(r1.duplicate, false);
    assert.equal(r2.duplicate, false);
    const c = await consumerOf(da, { name: consumer, filter: `${base}.>` });
    const [got, run] = acking(c, 1);
    try {
      await got.count(2);
      const [m1, m2] = got.msgs as [DurableMessage, DurableMessage];
      assert.deepEqual([text(m1.data), text(m2.data)], ["one", "two"]);
      assert.equal(m1.subject, `${base}.x`);
      assert.equal(m1.headers["tr-k"], "v");
      assert.deepEqual([m1.seq, m2.seq], [r1.seq, r2.seq]);
      assert.deepEqual([m1.deliveries, m2.deliveries], [1, 1]);
      assert.equal(m1.id, undefined);
      assert.equal(m2.id, `two-${consumer}`);
      assert.ok(m1.storedAt >= t0 - 1000 && m1.storedAt <= Date.now() + 1000, `${m1.storedAt}`);
    } finally {
      await run.stop();
    }
  });

  test("a message published twice with one id is stored once", async ({ da, db, base, consumer }) => {
    const id = `dup-${consumer}`;
    const first = await da.publish(`${base}.x`, bytes("a"), { id });
    const again = await db.publish(`${base}.x`, bytes("a"), { id });
    assert.equal(again.duplicate, true);
    assert.equal(again.seq, first.seq);
    await da.publish(`${base}.x`, bytes("marker"));
    const c = await consumerOf(db, { name: consumer, filter: `${base}.x` });
    assert.deepEqual(await ackedUntilMarker(c), ["a", "marker"]);
  });

  test("a stored message also reaches plain subscribers of its subject", async ({ a, b, db, base }) => {
    const seen: string[] = [];
    let resolve!: () => void;
    const arrived = new Promise<void>((r) => resolve = r);
    a.subscribe(`${base}.*`, (m) => {
      seen.push(text(m.data));
      resolve();
    });
    await a.flush();
    await db.publish(`${base}.x`, bytes("hi"));
    await b.flush();
    await bounded(arrived, waitMs, "the plain subscriber");
    assert.deepEqual(seen, ["hi"]);
  });

  test("subjects outside <prefix>.d. are refused with a TypeError", async ({ mesh, da, consumer }) => {
    await assert.rejects(da.publish(`${mesh.prefix}.t.x`, bytes("x")), TypeError);
    await assert.rejects(
      da.consumer({ name: consumer, filter: `${mesh.prefix}.t.>`, from: "all", ackWait: 1000 }),
      TypeError,
    );
  });

  // ----------------------------------------------------------------------------- consumers

  test("from 'new' skips what was stored before; from a Date starts at that time", async ({ da, base, consumer }) => {
    await da.publish(`${base}.x`, bytes("old"));
    const cNew = await consumerOf(da, { name: `${consumer}n`, filter: `${base}.x`, from: "new" });
    // the store's clock may be another machine's: take the time from a stored message
    const probe = await consumerOf(da, { name: `${consumer}p`, filter: `${base}.x` });
    const [probed, p] = acking(probe, 1);
    await probed.count(1);
    await p.stop();
    const oldAt = probed.msgs[0]!.storedAt;
    // "new" must be stored in a later millisecond than "old" (an in-process store's clock)
    const until = performance.now() + waitMs;
    while (Date.now() <= oldAt + 1 && performance.now() < until) {
      await new Promise((r) => setTimeout(r, 1));
    }
    await da.publish(`${base}.x`, bytes("new"));
    const cDate = await consumerOf(da, {
      name: `${consumer}d`,
      filter: `${base}.x`,
      from: new Date(oldAt + 1),
    });
    const cAll = await consumerOf(da, { name: `${consumer}a`, filter: `${base}.x`, from: "all" });
    const boxes = [inbox(), inbox(), inbox()];
    const runs = [cNew, cDate, cAll].map((c, i) =>
      c.consume((m) => {
        boxes[i]!.handler(m);
        m.ack();
      }, { maxInFlight: 2 })
    );
    try {
      await da.publish(`${base}.x`, bytes("marker"));
      for (const box of boxes) {
        await box.until(() => box.msgs.some((m) => text(m.data) === "marker"), "the marker");
      }
      const texts = boxes.map((box) => box.msgs.map((m) => text(m.data)));
      assert.deepEqual(texts[0], ["new", "marker"]);
      assert.deepEqual(texts[1], ["new", "marker"]);
      assert.deepEqual(texts[2], ["old", "new", "marker"]);
    } finally {
      await Promise.all(runs.map((r) => r.stop()));
    }
  });

  test("a consumer keeps its position while nothing consumes, and across connections", async ({ da, db, base, consumer }) => {
    const c1 = await consumerOf(da, { name: consumer, filter: `${base}.x` });
    for (const t of ["1", "2"]) await da.publish(`${base}.x`, bytes(t));
    const [first, run1] = acking(c1, 1);
    await first.count(2);
    await run1.stop();
    for (const t of ["3", "4"]) await db.publish(`${base}.x`, bytes(t)); // nobody consumes
    const c2 = await consumerOf(db, { name: consumer, filter: `${base}.x`, from: "new" });
    const [second, run2] = acking(c2, 1);
    try {
      await second.count(2);
      assert.deepEqual(first.msgs.map((m) => text(m.data)), ["1", "2"]);
      assert.deepEqual(second.msgs.map((m) => text(m.data)), ["3", "4"]);
    } finally {
      await run2.stop();
    }
  });

  test("a consumer gets only subjects matching its filter", async ({ da, base, consumer }) => {
    const c = await consumerOf(da, { name: consumer, filter: `${base}.a.*` });
    await da.publish(`${base}.b.x`, bytes("b"));
    await da.publish(`${base}.a.x`, bytes("a"));
    await da.publish(`${base}.a.x.y`, bytes("deep"));
    await da.publish(`${base}.a.z`, bytes("marker"));
    assert.deepEqual(await ackedUntilMarker(c), ["a", "marker"]);
  });

  test("one name with another filter is refused with a TypeError", async ({ da, db, base, consumer }) => {
    await consumerOf(da, { name: consumer, filter: `${base}.x` });
    await assert.rejects(consumerOf(db, { name: consumer, filter: `${base}.y` }), TypeError);
    const again = await consumerOf(db, { name: consumer, filter: `${base}.x` });
    assert.equal(again.name, consumer);
  });

  test("messages come first in store order (200, one at a time)", async ({ da, base, consumer }) => {
    const c = await consumerOf(da, { name: consumer, filter: `${base}.>` });
    const [got, run] = acking(c, 1);
    try {
      await Promise.all(
        Array.from({ length: 200 }, (_, i) => da.publish(`${base}.${i % 3}`, bytes(String(i)))),
      );
      await got.count(200);
      const seqs = got.msgs.map((m) => m.seq);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
      assert.equal(new Set(seqs).size, 200);
    } finally {
      await run.stop();
    }
  });

  test("two consumptions of one consumer on two nodes: each message to one of them", async ({ da, db, base, consumer }) => {
    const ca = await consumerOf(da, { name: consumer, filter: `${base}.>` });
    const cb = await consumerOf(db, { name: consumer, filter: `${base}.>` });
    const all = inbox();
    const seqs = new Set<number>();
    const take = (m: DurableMessage) => {
      seqs.add(m.seq);
      all.handler(m);
      m.ack();
    };
    const ra = ca.consume(take, { maxInFlight: 2 });
    const rb = cb.consume(take, { maxInFlight: 2 });
    try {
      const n = 60;
      for (let i = 0; i < n; i++) await (i % 2 ? da : db).publish(`${base}.x`, bytes(String(i)));
      await all.until(() => seqs.size >= n, `${n} distinct messages`);
      assert.equal(all.msgs.length, n, "no message twice");
    } finally {
      await Promise.all([ra.stop(), rb.stop()]);
    }
  });

  test("at most maxInFlight unsettled messages are out with a consumption", async ({ da, base, consumer }) => {
    const c = await consumerOf(da, { name: consumer, filter: `${base}.>` });
    for (let i = 0; i < 7; i++) await da.publish(`${base}.x`, bytes(String(i)));
    let out = 0;
    let most = 0;
    let acked = 0;
    const got = inbox();
    const run = c.consume((m) => {
      out++;
      most = Math.max(most, out);
      // settle later: meanwhile the consumption is full
      setTimeout(() => {
        out--;
        acked++;
        m.ack();
        got.handler(m);
      }, 20);
    }, { maxInFlight: 3 });
    try {
      await got.until(() => acked === 7, "7 messages settled");
      assert.ok(most <= 3, `${most} out at once`);
      assert.equal(most, 3, "the consumption was filled");
    } finally {
      await run.stop();
    }
  });

  // ---------------------------------------------------------------------------- redelivery

  test("nak(delay) delivers again after the delay with deliveries + 1; ack and term never again", async ({ da, base, consumer }) => {
    const c = await consumerOf(da, { name: consumer, filter: `${base}.>` });
    await da.publish(`${base}.x`, bytes("acked"));
    await da.publish(`${base}.x`, bytes("termed"));
    await da.publish(`${base}.x`, bytes("naked"));
    const delay = 300;
    const firstAt = new Map<string, number>();
    const got = inbox();
    const run = c.consume((m) => {
      const t = text(m.data);
      got.handler(m);
      if (m.deliveries === 1) firstAt.set(t, performance.now());
      if (t === "acked") m.ack();
      else if (t === "termed") m.term();
      else if (m.deliveries === 1) m.nak(delay);
      else m.ack();
    }, { maxInFlight: 3 });
    try {
      await got.until(
        () => got.msgs.some((m) => text(m.data) === "naked" && m.deliveries === 2),
        "the nak'ed message again",
      );
      const again = got.msgs.find((m) => m.deliveries === 2)!;
      const waited = performance.now() - firstAt.get("naked")!;
      assert.ok(waited >= delay * 0.8, `came back after ${Math.round(waited)} ms`);
      assert.equal(again.seq, got.msgs.find((m) => text(m.data) === "naked")!.seq);
      // an acked or termed message due again would have come before the delayed one
      assert.deepEqual(
        got.msgs.map((m) => `${text(m.data)}#${m.deliveries}`),
        ["acked#1", "termed#1", "naked#1", "naked#2"],
      );
    } finally {
      await run.stop();
    }
  });

  test("a message not settled within ackWait is delivered again, to another consumption", async ({ da, db, base, consumer }) => {
    const ca = await consumerOf(da, { name: consumer, filter: `${base}.>`, ackWait });
    const held: DurableMessage[] = [];
    const ga = inbox();
    const ra = ca.consume((m) => {
      held.push(m); // never settled: the node is "stuck"
      ga.handler(m);
    }, { maxInFlight: 1 });
    let rb: DurableConsumption | undefined;
    try {
      await da.publish(`${base}.x`, bytes("m"));
      await ga.count(1);
      const t0 = performance.now();
      const cb = await consumerOf(db, { name: consumer, filter: `${base}.>`, ackWait });
      const gb = inbox();
      rb = cb.consume((m) => {
        gb.handler(m);
        m.ack();
      }, { maxInFlight: 1 });
      await gb.count(1);
      const waited = performance.now() - t0;
      assert.equal(gb.msgs[0]!.deliveries, 2);
      assert.equal(text(gb.msgs[0]!.data), "m");
      assert.ok(waited >= ackWait * 0.5, `redelivered after ${Math.round(waited)} ms`);
    } finally {
      await ra.stop();
      await rb?.stop();
    }
  });

  test("working() keeps a message from being delivered again", async ({ da, db, base, consumer }) => {
    const ca = await consumerOf(da, { name: consumer, filter: `${base}.>`, ackWait });
    const cb = await consumerOf(db, { name: consumer, filter: `${base}.>`, ackWait });
    const all = inbox();
    const onB: string[] = [];
    let timer: ReturnType<typeof setInterval> | undefined;
    let done!: () => void;
    const worked = new Promise<void>((r) => done = r);
    const ra = ca.consume((m) => {
      all.handler(m);
      if (text(m.data) !== "slow") return m.ack();
      let beats = 0;
      timer = setInterval(() => {
        m.working();
        if (++beats === 8) { // about 2.7 × ackWait
          clearInterval(timer);
          m.ack();
          done();
        }
      }, ackWait / 3);
    }, { maxInFlight: 1 });
    await da.publish(`${base}.x`, bytes("slow"));
    await all.count(1);
    const rb = cb.consume((m) => {
      onB.push(text(m.data));
      all.handler(m);
      m.ack();
    }, { maxInFlight: 1 });
    try {
      await bounded(worked, waitMs + 4 * ackWait, "the slow handler");
      // node b had room all along: a redelivery of "slow" would have reached it by now
      await db.publish(`${base}.x`, bytes("marker"));
      await all.until(() => all.msgs.some((m) => text(m.data) === "marker"), "the marker");
      assert.deepEqual(all.msgs.map((m) => text(m.data)), ["slow", "marker"]);
      assert.ok(!onB.includes("slow"));
    } finally {
      clearInterval(timer);
      await ra.stop();
      await rb.stop();
    }
  });

  test("stop(): nothing is delivered to the handler after it resolved", async ({ da, db, base, consumer }) => {
    const ca = await consumerOf(da, { name: consumer, filter: `${base}.>` });
    const [ga, ra] = acking(ca, 1);
    await da.publish(`${base}.x`, bytes("before"));
    await ga.count(1);
    await ra.stop();
    await ra.closed;
    await da.publish(`${base}.x`, bytes("after"));
    const cb = await consumerOf(db, { name: consumer, filter: `${base}.>` });
    const [gb, rb] = acking(cb, 1);
    try {
      await gb.count(1);
      assert.equal(text(gb.msgs[0]!.data), "after");
      assert.deepEqual(ga.msgs.map((m) => text(m.data)), ["before"]);
    } finally {
      await rb.stop();
    }
  });

  test("closing the connection ends its consumptions", async ({ a, da, consumer, base }) => {
    const c = await consumerOf(da, { name: consumer, filter: `${base}.>` });
    const run = c.consume((m) => m.ack(), { maxInFlight: 1 });
    await a.close();
    await bounded(run.closed, waitMs, "the consumption to end");
  });

  test("deleteConsumer(): the name starts over from its 'from'", async ({ da, db, base, consumer }) => {
    const c = await consumerOf(da, { name: consumer, filter: `${base}.x` });
    await da.publish(`${base}.x`, bytes("1"));
    const [first, run] = acking(c, 1);
    await first.count(1);
    await run.stop();
    await db.deleteConsumer(consumer);
    const again = await consumerOf(db, { name: consumer, filter: `${base}.x`, from: "all" });
    const [second, run2] = acking(again, 1);
    try {
      await second.count(1);
      assert.equal(text(second.msgs[0]!.data), "1");
    } finally {
      await run2.stop();
    }
  });
}

/** Rejects if `p` does not settle within `ms`; always clears its timer. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}
