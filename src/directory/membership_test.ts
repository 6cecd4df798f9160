import assert from "node:assert/strict";
import { delay, waitFor } from "../util/_testing.ts";
import { inProcessMesh } from "../mesh/in_process.ts";
import type { KvBucket, Mesh, MeshConnection } from "../mesh/types.ts";
import { encodeToken } from "../mesh/subject.ts";
import type { DirectoryEvent } from "./types.ts";
import { type Membership, type MembershipEvent, startMembership } from "./membership.ts";

const TTL = 300;
const MARGIN = 200;

interface TestNode {
  conn: MeshConnection;
  m: Membership;
  events: { at: number; event: MembershipEvent }[];
  warnings: string[];
}

async function join(
  mesh: Mesh,
  id: string,
  types: string[] = [],
  connId = id,
): Promise<TestNode> {
  const conn = await mesh.connect({ node: connId });
  const events: TestNode["events"] = [];
  const warnings: string[] = [];
  const m = await startMembership(conn, {
    prefix: "t",
    node: { id, types, since: Date.now() },
    ttl: mesh.leaseTtl,
    margin: MARGIN,
    onWarning: (w) => warnings.push(w),
  });
  m.on((event) => events.push({ at: performance.now(), event }));
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
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a", ["account"]);
  assert.deepEqual(ids(a.m), ["a"]);
  const b = await join(mesh, "b");
  const c = await join(mesh, "c", ["account", "order"]);
  // The first put was acknowledged before startMembership resolved: far less than a period.
  await waitFor(() => ids(a.m).length === 3 && ids(b.m).length === 3, 50, "join seen by all");
  assert.deepEqual(ids(a.m), ["a", "b", "c"]);
  assert.deepEqual(ids(c.m), ["a", "b", "c"]);
  assert.deepEqual(a.m.hostsOf("account"), ["a", "c"]);
  assert.deepEqual(b.m.hostsOf("order"), ["c"]);
  assert.equal(b.m.isAlive("c"), true);
  assert.equal(b.m.status("nope"), "unknown");
  assert.ok(a.events.some((e) => e.event.type === "node_joined" && e.event.node.id === "c"));
  await leave(a, b, c);
});

Deno.test("close() removes the node from every view at once", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a");
  const b = await join(mesh, "b");
  await waitFor(() => a.m.isAlive("b"), 50, "b seen");
  const t0 = performance.now();
  await leave(b);
  await waitFor(() => !a.m.isAlive("b"), 50, "b gone");
  assert.ok(performance.now() - t0 < TTL / 3, "the leave is seen well before any expiry");
  assert.equal(a.m.status("b"), "dead");
  const left = a.events.find((e) => e.event.type === "node_left");
  assert.equal(left?.event.type === "node_left" && left.event.reason, "left");
  assert.deepEqual(ids(a.m), ["a"]);
  await leave(a);
});

Deno.test("a node that stops heartbeating is dead after ttl + margin, not before", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a");
  const b = await join(mesh, "b");
  // The test watches the bucket itself to know when b's last heartbeat was seen.
  const kv = await a.conn.kv("t_nodes");
  const watch = kv.watch({ key: encodeToken("b") });
  let lastPut = performance.now();
  const loop = (async () => {
    for await (const e of watch) if (e.operation === "PUT") lastPut = performance.now();
  })();
  await delay(TTL / 2);
  b.m._pauseHeartbeats();
  const paused = performance.now();
  // Still alive a little before ttl + margin after the last heartbeat seen.
  await waitFor(() => performance.now() >= lastPut + TTL + MARGIN - 60, 2_000, "near deadline");
  assert.equal(a.m.isAlive("b"), true);
  await waitFor(() => !a.m.isAlive("b"), 2_000, "b declared dead");
  const deadAt = performance.now();
  // The view is a pure read; the expiry timer emits the event (right after).
  const isLeft = (e: TestNode["events"][number]) =>
    e.event.type === "node_left" && e.event.node.id === "b";
  await waitFor(() => a.events.some(isLeft), 50, "node_left of b");
  const left = a.events.find(isLeft)!;
  assert.ok(deadAt - lastPut >= TTL + MARGIN, "not dead in the view before ttl + margin");
  assert.equal(left.event.type === "node_left" && left.event.reason, "expired");
  const after = left.at - lastPut;
  assert.ok(after >= TTL + MARGIN, `declared dead ${after} ms after its last heartbeat`);
  assert.ok(after < TTL + MARGIN + 100, `declared dead late: ${after} ms`);
  assert.ok(lastPut <= paused + 1);
  assert.equal(a.m.status("b"), "dead");
  assert.deepEqual(ids(a.m), ["a"]);
  watch.stop();
  await loop;
  await leave(a, b);
});

Deno.test("validUntil() is the send time of the last acknowledged heartbeat + ttl", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const before = performance.now();
  const a = await join(mesh, "a");
  const after = performance.now();
  assert.ok(a.m.validUntil() >= before + TTL && a.m.validUntil() <= after + TTL);
  assert.equal(a.m.isFenced(), false);
  await delay(TTL / 3 + 50);
  assert.ok(a.m.validUntil() > after + TTL, "a heartbeat extended it");
  await leave(a);
});

Deno.test("a node fences itself when its deadline passes and un-fences on a new heartbeat", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a");
  a.m._pauseHeartbeats();
  const deadline = a.m.validUntil();
  await waitFor(() => a.events.some((e) => e.event.type === "fenced"), 2 * TTL, "fenced");
  const fenced = a.events.find((e) => e.event.type === "fenced")!;
  assert.equal(fenced.event.type === "fenced" && fenced.event.reason, "expired");
  assert.ok(fenced.at >= deadline, "not fenced before the deadline");
  assert.ok(fenced.at < deadline + 50, `fenced ${fenced.at - deadline} ms late`);
  assert.equal(a.m.isFenced(), true);
  assert.ok(performance.now() > a.m.validUntil());
  a.m._resumeHeartbeats();
  await waitFor(() => a.events.some((e) => e.event.type === "unfenced"), 200, "unfenced");
  assert.equal(a.m.isFenced(), false);
  assert.ok(a.m.validUntil() > performance.now());
  await leave(a);
});

Deno.test("failing heartbeats fence the node when its lease lapses, not before", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a");
  const deadline = a.m.validUntil();
  await a.conn.close(); // the KV is unreachable from now on
  await waitFor(() => a.events.some((e) => e.event.type === "fenced"), TTL * 2, "fenced event");
  assert.ok(a.m.isFenced());
  const fenced = a.events.find((e) => e.event.type === "fenced")!;
  assert.equal(fenced.event.type === "fenced" && fenced.event.reason, "heartbeat_failed");
  assert.ok(fenced.at >= deadline, "still serving while the lease held");
  assert.ok(fenced.at < deadline + 250, "fenced on time when it lapsed (timer lag allowed)");
  await a.m.close(); // cannot delete its key: warns, does not throw
  assert.ok(a.warnings.some((w) => w.includes("Could not delete")));
});

Deno.test("a death learned from another node's clean-up delete is reported expired", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a"); // declares b dead first, and deletes its key
  const b = await join(mesh, "b");
  // c calls deaths much later on its own clock: it learns b's death from a's delete.
  const conn = await mesh.connect({ node: "c" });
  const events: { at: number; event: MembershipEvent }[] = [];
  const c = await startMembership(conn, {
    prefix: "t",
    node: { id: "c", types: [], since: Date.now() },
    ttl: TTL,
    margin: 2_000,
    onWarning: () => {},
  });
  c.on((event) => events.push({ at: performance.now(), event }));
  await waitFor(() => c.isAlive("b") && a.m.isAlive("b"), 50, "b seen");
  const paused = performance.now();
  b.m._pauseHeartbeats();
  await waitFor(() => events.some((e) => e.event.type === "node_left"), 2_000, "c: b gone");
  const left = events.find((e) => e.event.type === "node_left")!;
  assert.ok(left.at - paused < TTL + 2_000, "through the delete, before c's own deadline");
  assert.equal(left.event.type === "node_left" && left.event.node.id, "b");
  assert.equal(left.event.type === "node_left" && left.event.reason, "expired");
  assert.equal(c.status("b"), "dead");
  assert.equal(await c.confirmDead("b"), true);
  await c.close();
  await conn.close();
  await leave(a, b);
});

Deno.test("a graceful close puts a leave mark before its delete and is reported left", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a");
  const b = await join(mesh, "b");
  await waitFor(() => a.m.isAlive("b"), 50, "b seen");
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
  await waitFor(() => marks.includes(true), 100, "the leave mark");
  watch.stop();
  await loop;
  const left = a.events.find((e) => e.event.type === "node_left");
  assert.equal(left?.event.type === "node_left" && left.event.reason, "left");
  assert.equal(a.m.status("b"), "dead");
  await leave(a);
});

Deno.test("a node warns when its key is deleted by someone else, and heartbeats again", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a");
  const b = await join(mesh, "b");
  const kv = await b.conn.kv("t_nodes");
  await kv.delete(encodeToken("a"));
  await waitFor(() => a.warnings.length > 0, 100, "warning");
  assert.match(a.warnings[0]!, /deleted by another node/);
  await waitFor(() => b.m.isAlive("a"), 100, "a back");
  assert.ok((await kv.get(encodeToken("a"))) !== null);
  await leave(a, b);
});

Deno.test("two nodes with the same id are reported", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a1 = await join(mesh, "a", [], "a-1");
  const a2 = await join(mesh, "a", [], "a-2");
  const o = await join(mesh, "o");
  await waitFor(
    () => a1.warnings.length > 0 && a2.warnings.length > 0,
    TTL,
    "duplicate warnings",
  );
  assert.match(a1.warnings[0]!, /Another node uses the id "a"/);
  await waitFor(() => o.warnings.length > 0, 2 * TTL, "observer warning");
  assert.match(o.warnings[0]!, /share the id "a"/);
  await leave(a1, a2, o);
});

Deno.test("watch() yields the live nodes, then joins and leaves", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a");
  const watch = a.m.watch();
  const seen: DirectoryEvent[] = [];
  const loop = (async () => {
    for await (const e of watch) seen.push(e);
  })();
  const b = await join(mesh, "b");
  await waitFor(() => seen.length >= 2, 100, "b joined");
  await leave(b);
  await waitFor(() => seen.length >= 3, 100, "b left");
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
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a");
  const conn = await mesh.connect({ node: "client" });
  const c = await startMembership(conn, {
    prefix: "t",
    node: { id: "client", types: [], since: Date.now() },
    ttl: TTL,
    hosts: false,
  });
  await waitFor(() => c.isAlive("a"), 50, "client sees a");
  assert.deepEqual(c.nodes().map((n) => n.id), ["a"]);
  assert.equal(a.m.isAlive("client"), false);
  assert.equal(c.validUntil(), Infinity);
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
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const a = await join(mesh, "a");
  const b = await join(mesh, "b");
  await waitFor(() => a.m.isAlive("b"), 50, "b seen");
  assert.equal(await a.m.confirmDead("b"), false);
  assert.equal(await a.m.confirmDead("never"), false, "not observed for ttl + margin yet");
  b.m._pauseHeartbeats();
  await waitFor(() => !a.m.isAlive("b"), 2_000, "b dead");
  assert.equal(await a.m.confirmDead("b"), true);
  assert.ok(performance.now() >= a.m.settledAt());
  assert.equal(await a.m.confirmDead("never"), true);
  await leave(a, b);
});

Deno.test("a hosting node whose watch lags declares nobody dead until it delivers again", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const raw = await mesh.connect({ node: "o" });
  const lag = laggy(raw);
  const o = await startMembership(lag.conn, {
    prefix: "t",
    node: { id: "o", types: ["x"], since: Date.now() },
    ttl: TTL,
    margin: MARGIN,
    onWarning: () => {},
  });
  const left: string[] = [];
  o.on((e) => e.type === "node_left" && left.push(e.node.id));
  const b = await join(mesh, "b");
  await waitFor(() => o.isAlive("b"), 50, "b seen");
  lag.hold(true); // o's watch stops delivering (its own heartbeats no longer come back)
  await delay(2 * (TTL + MARGIN));
  assert.equal(o.isAlive("b"), true, "b kept alive while o's watch lags");
  assert.deepEqual(left, []);
  assert.equal(o.isFenced(), false, "o itself still heartbeats");
  lag.hold(false);
  await delay(50);
  assert.equal(o.isAlive("b"), true);
  // b really dies: once o's watch is current again, o sees it
  b.m._pauseHeartbeats();
  await waitFor(() => !o.isAlive("b"), 3 * (TTL + MARGIN), "b dead in o's view");
  await waitFor(() => left.length > 0, 50, "node_left of b");
  assert.deepEqual(left, ["b"]);
  await o.close();
  await raw.close();
  await leave(b);
});

Deno.test("a lagging watch never makes a live node confirmed dead", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const raw = await mesh.connect({ node: "o" });
  const lag = laggy(raw);
  // an observer (no heartbeats of its own): its view trusts the watch
  const o = await startMembership(lag.conn, {
    prefix: "t",
    node: { id: "o", types: [], since: Date.now() },
    ttl: TTL,
    margin: MARGIN,
    hosts: false,
    onWarning: () => {},
  });
  const b = await join(mesh, "b");
  await waitFor(() => o.isAlive("b"), 50, "b seen");
  lag.hold(true); // o's watch stops delivering; b keeps heartbeating
  await waitFor(() => !o.isAlive("b"), 2_000, "b expired in o's lagging view");
  assert.equal(await o.confirmDead("b"), false);
  // o's clean-up of b's key was revision-checked, so b's newer heartbeat survived it.
  assert.notEqual(await (await raw.kv("t_nodes")).get(encodeToken("b")), null);
  lag.hold(false);
  await waitFor(() => o.isAlive("b"), 2 * TTL, "b alive again");
  await o.close();
  await raw.close();
  await leave(b);
});
