/**
 * Membership on a virtual clock: every time below is exact (the clock moves only when the test
 * says), so "dead after ttl + margin, not before" is checked to the millisecond.
 */
import assert from "node:assert/strict";
import { inProcessMesh } from "../mesh/in_process.ts";
import { type VirtualClock, virtualClock } from "../util/virtual_clock.ts";
import type { KvBucket, Mesh, MeshConnection } from "../mesh/types.ts";
import { encodeToken } from "../mesh/subject.ts";
import type { DirectoryEvent } from "./types.ts";
import { type Membership, type MembershipEvent, startMembership } from "./membership.ts";
import { advanceUntil as until } from "../util/_testing.ts";

const TTL = 300;
const MARGIN = 200;

/** A cluster on a virtual clock. */
function cluster(): { mesh: Mesh; clock: VirtualClock } {
  const clock = virtualClock(new Date("2026-01-01T00:00:00Z"));
  return { mesh: inProcessMesh({ leaseTtl: TTL, clock }), clock };
}

interface TestNode {
  conn: MeshConnection;
  m: Membership;
  events: { at: number; event: MembershipEvent }[];
  warnings: string[];
}

async function join(
  mesh: Mesh,
  clock: VirtualClock,
  id: string,
  types: string[] = [],
  connId = id,
): Promise<TestNode> {
  const conn = await mesh.connect({ node: connId, clock });
  const events: TestNode["events"] = [];
  const warnings: string[] = [];
  const m = await startMembership(conn, {
    prefix: "t",
    node: { id, types, since: clock.now() },
    ttl: mesh.leaseTtl,
    margin: MARGIN,
    onWarning: (w) => warnings.push(w),
    clock,
  });
  m.on((event) => events.push({ at: clock.monotonic(), event }));
  return { conn, m, events, warnings };
}

async function leave(...nodes: TestNode[]): Promise<void> {
  for (const n of nodes) {
    await n.m.close();
    await n.conn.close();
  }
}

const ids = (m: Membership) => m.nodes().map((n) => n.id);

Deno.test("startMembership() makes a node visible to every node, itself included", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a", ["account"]);
  assert.deepEqual(ids(a.m), ["a"]);
  const b = await join(mesh, clock, "b");
  const c = await join(mesh, clock, "c", ["account", "order"]);
  // The first put was acknowledged before startMembership resolved: no time has to pass.
  await clock.advance(0);
  assert.deepEqual(ids(a.m), ["a", "b", "c"]);
  assert.deepEqual(ids(b.m), ["a", "b", "c"]);
  assert.deepEqual(ids(c.m), ["a", "b", "c"]);
  assert.deepEqual(a.m.hostsOf("account"), ["a", "c"]);
  assert.deepEqual(b.m.hostsOf("order"), ["c"]);
  assert.equal(b.m.isAlive("c"), true);
  assert.equal(b.m.status("nope"), "unknown");
  assert.ok(a.events.some((e) => e.event.type === "node_joined" && e.event.node.id === "c"));
  assert.equal(clock.monotonic(), 0);
  await leave(a, b, c);
});

Deno.test("close() removes the node from every view at once", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  await clock.advance(0);
  assert.ok(a.m.isAlive("b"));
  await clock.advance(TTL / 2);
  await leave(b);
  await clock.advance(0);
  assert.equal(a.m.isAlive("b"), false, "gone with no time passing: no expiry involved");
  assert.equal(a.m.status("b"), "dead");
  const left = a.events.find((e) => e.event.type === "node_left");
  assert.equal(left?.event.type === "node_left" && left.event.reason, "left");
  assert.equal(left?.at, TTL / 2);
  assert.deepEqual(ids(a.m), ["a"]);
  await leave(a);
});

Deno.test("a node that stops heartbeating is dead after ttl + margin, not before", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  // The test watches the bucket itself to know when b's last heartbeat was put.
  const kv = await a.conn.kv("t_nodes");
  const watch = kv.watch({ key: encodeToken("b") });
  let lastPut = -1;
  const loop = (async () => {
    for await (const e of watch) if (e.operation === "PUT") lastPut = clock.monotonic();
  })();
  await clock.advance(TTL / 2);
  b.m._pauseHeartbeats();
  assert.equal(lastPut, TTL / 3, "its last heartbeat went out at ttl / 3");
  const deadline = lastPut + TTL + MARGIN;
  await clock.advance(deadline - clock.monotonic());
  assert.equal(a.m.isAlive("b"), true, "alive at ttl + margin after its last heartbeat");
  assert.ok(!a.events.some((e) => e.event.type === "node_left"));
  await clock.advance(1);
  assert.equal(a.m.isAlive("b"), false, "dead 1 ms later");
  const left = a.events.find((e) => e.event.type === "node_left" && e.event.node.id === "b")!;
  assert.equal(left.event.type === "node_left" && left.event.reason, "expired");
  assert.equal(left.at, deadline + 1, "the expiry timer emits it on time");
  assert.equal(a.m.status("b"), "dead");
  assert.deepEqual(ids(a.m), ["a"]);
  watch.stop();
  await loop;
  await leave(a, b);
});

Deno.test("validUntil() is the send time of the last acknowledged heartbeat + ttl", async () => {
  const { mesh, clock } = cluster();
  await clock.advance(1000);
  const a = await join(mesh, clock, "a");
  assert.equal(a.m.validUntil(), 1000 + TTL);
  assert.equal(a.m.isFenced(), false);
  await clock.advance(TTL / 3);
  assert.equal(a.m.validUntil(), 1000 + TTL / 3 + TTL, "the heartbeat at ttl / 3 extended it");
  await leave(a);
});

Deno.test("a node fences itself when its deadline passes and un-fences on a new heartbeat", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  a.m._pauseHeartbeats();
  const deadline = a.m.validUntil();
  await clock.advance(deadline);
  assert.equal(a.m.isFenced(), false, "not fenced at its deadline");
  assert.ok(!a.events.some((e) => e.event.type === "fenced"));
  await clock.advance(1);
  const fenced = a.events.find((e) => e.event.type === "fenced")!;
  assert.equal(fenced.event.type === "fenced" && fenced.event.reason, "expired");
  assert.equal(fenced.at, deadline + 1, "fenced 1 ms past it");
  assert.equal(a.m.isFenced(), true);
  a.m._resumeHeartbeats();
  await clock.advance(0); // the heartbeat goes out at once; no time passes
  assert.ok(a.events.some((e) => e.event.type === "unfenced"));
  assert.equal(a.m.isFenced(), false);
  assert.equal(a.m.validUntil(), deadline + 1 + TTL);
  await leave(a);
});

Deno.test("failing heartbeats fence the node when its lease lapses, not before", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const deadline = a.m.validUntil();
  await a.conn.close(); // the KV is unreachable from now on
  await clock.advance(deadline);
  assert.equal(a.m.isFenced(), false, "still serving while the lease holds");
  await clock.advance(1);
  assert.ok(a.m.isFenced());
  const fenced = a.events.find((e) => e.event.type === "fenced")!;
  assert.equal(fenced.event.type === "fenced" && fenced.event.reason, "heartbeat_failed");
  assert.equal(fenced.at, deadline + 1, "fenced when it lapsed");
  await a.m.close(); // cannot delete its key: warns, does not throw
  assert.ok(a.warnings.some((w) => w.includes("Could not delete")));
});

Deno.test("a death learned from another node's clean-up delete is reported expired", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a"); // declares b dead first, and deletes its key
  const b = await join(mesh, clock, "b");
  // c calls deaths much later on its own clock: it learns b's death from a's delete.
  const conn = await mesh.connect({ node: "c", clock });
  const events: { at: number; event: MembershipEvent }[] = [];
  const c = await startMembership(conn, {
    prefix: "t",
    node: { id: "c", types: [], since: clock.now() },
    ttl: TTL,
    margin: 2_000,
    onWarning: () => {},
    clock,
  });
  c.on((event) => events.push({ at: clock.monotonic(), event }));
  await clock.advance(0);
  assert.ok(c.isAlive("b") && a.m.isAlive("b"));
  b.m._pauseHeartbeats(); // its last heartbeat was at 0
  await until(clock, () => events.some((e) => e.event.type === "node_left"), 2_000, "c: b gone");
  const left = events.find((e) => e.event.type === "node_left")!;
  assert.equal(left.at, TTL + MARGIN + 1, "through a's delete, long before c's own deadline");
  assert.equal(left.event.type === "node_left" && left.event.node.id, "b");
  assert.equal(left.event.type === "node_left" && left.event.reason, "expired");
  assert.equal(c.status("b"), "dead");
  assert.equal(await c.confirmDead("b"), true);
  await c.close();
  await conn.close();
  await leave(a, b);
});

Deno.test("a graceful close puts a leave mark before its delete and is reported left", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  await clock.advance(0);
  assert.ok(a.m.isAlive("b"));
  // b's last heartbeat carries the leave mark: a crash between it and the delete is still
  // a graceful leave (b released everything before).
  const kv = await b.conn.kv("t_nodes");
  const marks: boolean[] = [];
  const watch = kv.watch({ key: encodeToken("b"), initial: false });
  const loop = (async () => {
    for await (const e of watch) {
      if (e.operation === "PUT") {
        marks.push(JSON.parse(new TextDecoder().decode(e.value)).leaving === true);
      }
    }
  })();
  await watch.ready;
  await leave(b);
  await clock.advance(0);
  assert.deepEqual(marks, [true], "one put: the leave mark");
  watch.stop();
  await loop;
  const left = a.events.find((e) => e.event.type === "node_left");
  assert.equal(left?.event.type === "node_left" && left.event.reason, "left");
  assert.equal(a.m.status("b"), "dead");
  await leave(a);
});

Deno.test("a node warns when its key is deleted by someone else, and heartbeats again", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  const kv = await b.conn.kv("t_nodes");
  await kv.delete(encodeToken("a"));
  await clock.advance(0);
  assert.match(a.warnings[0] ?? "", /deleted by another node/);
  assert.ok(b.m.isAlive("a"), "a put its heartbeat again at once");
  assert.ok((await kv.get(encodeToken("a"))) !== null);
  await leave(a, b);
});

Deno.test("two nodes with the same id are reported", async () => {
  const { mesh, clock } = cluster();
  const a1 = await join(mesh, clock, "a", [], "a-1");
  const a2 = await join(mesh, clock, "a", [], "a-2");
  const o = await join(mesh, clock, "o");
  await until(
    clock,
    () => a1.warnings.length > 0 && a2.warnings.length > 0,
    TTL,
    "duplicate warnings",
  );
  assert.match(a1.warnings[0]!, /Another node uses the id "a"/);
  await until(clock, () => o.warnings.length > 0, 2 * TTL, "observer warning");
  assert.match(o.warnings[0]!, /share the id "a"/);
  await leave(a1, a2, o);
});

Deno.test("watch() yields the live nodes, then joins and leaves", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const watch = a.m.watch();
  const seen: DirectoryEvent[] = [];
  const loop = (async () => {
    for await (const e of watch) seen.push(e);
  })();
  const b = await join(mesh, clock, "b");
  await clock.advance(0);
  assert.equal(seen.length, 2, "a, then b joined");
  await leave(b);
  await clock.advance(0);
  watch.stop();
  await loop;
  assert.deepEqual(
    seen.map((e) => `${e.type}:${"node" in e && typeof e.node === "object" ? e.node.id : ""}`),
    ["node_joined:a", "node_joined:b", "node_left:b"],
  );
  const w2 = a.m.watch();
  await leave(a);
  for await (const _ of w2) { /* ends on close */ }
});

Deno.test("an observer-only node is not listed and never fenced", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const conn = await mesh.connect({ node: "client", clock });
  const c = await startMembership(conn, {
    prefix: "t",
    node: { id: "client", types: [], since: clock.now() },
    ttl: TTL,
    hosts: false,
    clock,
  });
  await clock.advance(0);
  assert.ok(c.isAlive("a"));
  assert.deepEqual(c.nodes().map((n) => n.id), ["a"]);
  assert.equal(a.m.isAlive("client"), false);
  assert.equal(c.validUntil(), Infinity);
  await clock.advance(10 * TTL);
  assert.equal(c.isFenced(), false);
  await c.close();
  await conn.close();
  await leave(a);
});

/** A connection whose KV watches can be held back, as a lagging watch would be. */
function laggy(conn: MeshConnection): { conn: MeshConnection; hold(on: boolean): void } {
  let held = false;
  let release: (() => void) | undefined;
  const gate = () => held ? new Promise<void>((r) => release = r) : Promise.resolve();
  const wrapped: MeshConnection = {
    maxPayload: conn.maxPayload,
    publish: (...a) => conn.publish(...a),
    request: (...a) => conn.request(...a),
    subscribe: (...a) => conn.subscribe(...a),
    inbox: () => conn.inbox(),
    flush: () => conn.flush(),
    onStatus: (l) => conn.onStatus(l),
    close: () => conn.close(),
    async kv(name, options) {
      const bucket = await conn.kv(name, options);
      const b: KvBucket = {
        name: bucket.name,
        incarnation: bucket.incarnation,
        serializedCas: bucket.serializedCas,
        incarnationNow: () => bucket.incarnationNow(),
        get: (k) => bucket.get(k),
        put: (k, v) => bucket.put(k, v),
        create: (k, v) => bucket.create(k, v),
        update: (k, v, r) => bucket.update(k, v, r),
        delete: (k, o) => bucket.delete(k, o),
        keys: (f) => bucket.keys(f),
        watch(opts) {
          const inner = bucket.watch(opts);
          return {
            stop: () => {
              inner.stop();
              release?.();
            },
            async *[Symbol.asyncIterator]() {
              for await (const e of inner) {
                await gate();
                yield e;
              }
            },
          };
        },
      };
      return b;
    },
  };
  return {
    conn: wrapped,
    hold(on) {
      held = on;
      if (!on) release?.();
    },
  };
}

Deno.test("confirmDead() double-checks a death against the bucket", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  await clock.advance(0);
  assert.ok(a.m.isAlive("b"));
  assert.equal(await a.m.confirmDead("b"), false);
  assert.equal(await a.m.confirmDead("never"), false, "not observed for ttl + margin yet");
  b.m._pauseHeartbeats();
  await until(clock, () => !a.m.isAlive("b"), 2_000, "b dead");
  assert.equal(await a.m.confirmDead("b"), true);
  assert.ok(clock.monotonic() >= a.m.settledAt());
  assert.equal(await a.m.confirmDead("never"), true);
  await leave(a, b);
});

Deno.test("a hosting node whose watch lags declares nobody dead until it delivers again", async () => {
  const { mesh, clock } = cluster();
  const raw = await mesh.connect({ node: "o", clock });
  const lag = laggy(raw);
  const o = await startMembership(lag.conn, {
    prefix: "t",
    node: { id: "o", types: ["x"], since: clock.now() },
    ttl: TTL,
    margin: MARGIN,
    onWarning: () => {},
    clock,
  });
  const left: string[] = [];
  o.on((e) => e.type === "node_left" && left.push(e.node.id));
  const b = await join(mesh, clock, "b");
  await clock.advance(0);
  assert.ok(o.isAlive("b"));
  lag.hold(true); // o's watch stops delivering (its own heartbeats no longer come back)
  await clock.advance(2 * (TTL + MARGIN));
  assert.equal(o.isAlive("b"), true, "b kept alive while o's watch lags");
  assert.deepEqual(left, []);
  assert.equal(o.isFenced(), false, "o itself still heartbeats");
  lag.hold(false);
  await clock.advance(50);
  assert.equal(o.isAlive("b"), true);
  // b really dies: once o's watch is current again, o sees it
  b.m._pauseHeartbeats();
  await until(clock, () => !o.isAlive("b"), 3 * (TTL + MARGIN), "b dead in o's view");
  await until(clock, () => left.length > 0, 50, "node_left of b");
  assert.deepEqual(left, ["b"]);
  await o.close();
  await raw.close();
  await leave(b);
});

Deno.test("a lagging watch never makes a live node confirmed dead", async () => {
  const { mesh, clock } = cluster();
  const raw = await mesh.connect({ node: "o", clock });
  const lag = laggy(raw);
  // an observer (no heartbeats of its own): its view trusts the watch
  const o = await startMembership(lag.conn, {
    prefix: "t",
    node: { id: "o", types: [], since: clock.now() },
    ttl: TTL,
    margin: MARGIN,
    hosts: false,
    onWarning: () => {},
    clock,
  });
  const b = await join(mesh, clock, "b");
  await clock.advance(0);
  assert.ok(o.isAlive("b"));
  lag.hold(true); // o's watch stops delivering; b keeps heartbeating
  await until(clock, () => !o.isAlive("b"), 2_000, "b expired in o's lagging view");
  assert.equal(await o.confirmDead("b"), false);
  // o's clean-up of b's key was revision-checked, so b's newer heartbeat survived it.
  assert.notEqual(await (await raw.kv("t_nodes")).get(encodeToken("b")), null);
  lag.hold(false);
  await until(clock, () => o.isAlive("b"), 2 * TTL, "b alive again");
  await o.close();
  await raw.close();
  await leave(b);
});
