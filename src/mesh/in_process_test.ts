import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { meshConformance } from "./conformance.ts";
import { durableTopicsConformance } from "./durable_conformance.ts";
import { inProcessMesh } from "./in_process.ts";
import { MeshError, type MeshMessage } from "./types.ts";

/** One macrotask turn: every microtask (in-process delivery) has run by then. */
const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Deno 2.9 leaves the ops sanitizer off by default; these tests want it on. */
function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, sanitizeOps: true, sanitizeResources: true, fn });
}

meshConformance(
  "in-process mesh",
  () => Promise.resolve({ mesh: inProcessMesh(), cleanup: () => Promise.resolve() }),
  { maxPayload: 1024 * 1024 },
);

test("inProcessMesh() has the documented defaults and options", async () => {
  const mesh = inProcessMesh();
  assert.equal(mesh.kind, "in-process");
  assert.equal(mesh.leaseTtl, 5000);
  assert.equal(mesh.prefix, "troupe");
  const conn = await mesh.connect({ node: "n" });
  assert.equal(conn.maxPayload, 1024 * 1024);
  await conn.close();
  const custom = inProcessMesh({ leaseTtl: 100, prefix: "t2", maxPayload: 10 });
  assert.equal(custom.leaseTtl, 100);
  assert.equal(custom.prefix, "t2");
  const c2 = await custom.connect({ node: "n" });
  assert.equal(c2.maxPayload, 10);
  assert.throws(() => c2.publish("t2.x", new Uint8Array(11)), MeshError);
  await c2.close();
  assert.throws(() => inProcessMesh({ prefix: "a.b" }), TypeError);
  assert.throws(() => inProcessMesh({ leaseTtl: 0 }), RangeError);
});

test("inProcessMesh() values are separate clusters", async () => {
  const a = await inProcessMesh().connect({ node: "a" });
  const b = await inProcessMesh().connect({ node: "b" });
  b.subscribe("x", () => {});
  await assert.rejects(a.request("x", new Uint8Array(), { timeout: 100 }), MeshError);
  const ka = await a.kv("bucket");
  const kb = await b.kv("bucket");
  assert.notEqual(ka.incarnation, kb.incarnation);
  await ka.put("k", new Uint8Array([1]));
  assert.equal(await kb.get("k"), null);
  await a.close();
  await b.close();
});

test("in-process buckets outlive connections", async () => {
  const mesh = inProcessMesh();
  const a = await mesh.connect({ node: "a" });
  const ka = await a.kv("b");
  const rev = await ka.put("k", new Uint8Array([1]));
  await a.close();
  const b = await mesh.connect({ node: "b" });
  const kb = await b.kv("b");
  assert.equal(kb.incarnation, ka.incarnation);
  assert.equal((await kb.get("k"))!.revision, rev);
  await b.close();
});

test("in-process connect() rejects an aborted signal and an empty node id", async () => {
  const mesh = inProcessMesh();
  await assert.rejects(mesh.connect({ node: "a", signal: AbortSignal.abort() }));
  await assert.rejects(mesh.connect({ node: "" }), TypeError);
});

test("in-process mesh rejects invalid subjects, queues, buckets and keys", async () => {
  const conn = await inProcessMesh().connect({ node: "a" });
  const d = new Uint8Array();
  assert.throws(() => conn.publish("a.*", d), TypeError);
  assert.throws(() => conn.publish("a..b", d), TypeError);
  assert.throws(() => conn.publish("", d), TypeError);
  assert.throws(() => conn.subscribe("a.>.b", () => {}), TypeError);
  assert.throws(() => conn.subscribe("a b", () => {}), TypeError);
  assert.throws(() => conn.subscribe("a", () => {}, { queue: "" }), TypeError);
  await assert.rejects(conn.request("a.*", d, { timeout: 10 }), TypeError);
  await assert.rejects(conn.kv("a.b"), TypeError);
  const kv = await conn.kv("ok");
  await assert.rejects(kv.put("a b", d), TypeError);
  await assert.rejects(kv.put("a.*", d), TypeError);
  await assert.rejects(kv.put("", d), TypeError);
  await assert.rejects(kv.keys("a..b"), TypeError);
  assert.throws(() => kv.watch({ key: "" }), TypeError);
  await conn.close();
});

test("in-process KV values are copied on read", async () => {
  const conn = await inProcessMesh().connect({ node: "a" });
  const kv = await conn.kv("b");
  await kv.put("k", new Uint8Array([1, 2]));
  const e = await kv.get("k");
  e!.value[0] = 9;
  assert.deepEqual([...(await kv.get("k"))!.value], [1, 2]);
  await conn.close();
});

test("in-process close() handles messages already queued, then stops", async () => {
  const mesh = inProcessMesh();
  const a = await mesh.connect({ node: "a" });
  const b = await mesh.connect({ node: "b" });
  const got: string[] = [];
  b.subscribe("svc", (m) => {
    got.push(new TextDecoder().decode(m.data));
    if (m.reply) b.publish(m.reply, m.data);
  });
  const reply = a.request("svc", new TextEncoder().encode("r"), { timeout: 1000 });
  a.publish("svc", new TextEncoder().encode("p"));
  await b.close();
  assert.deepEqual(got, ["r", "p"]);
  assert.equal(new TextDecoder().decode((await reply).data), "r");
  await a.close();
});

test("in-process handler errors go to onStatus and do not stop delivery", async () => {
  const conn = await inProcessMesh().connect({ node: "a" });
  const statuses: unknown[] = [];
  const off = conn.onStatus((s) => statuses.push(s));
  const got: number[] = [];
  conn.subscribe("x", (m: MeshMessage) => {
    got.push(m.data[0]!);
    if (m.data[0] === 1) throw new Error("boom");
  });
  conn.publish("x", new Uint8Array([1]));
  conn.publish("x", new Uint8Array([2]));
  await conn.flush();
  await settled(); // delivery runs in microtasks: one macrotask turn sees it done
  assert.deepEqual(got, [1, 2]);
  assert.equal(statuses.length, 1);
  assert.equal((statuses[0] as { type: string }).type, "error");
  off();
  await conn.close();
});

test("in-process delivery of a long burst yields to timers", async () => {
  const mesh = inProcessMesh();
  const a = await mesh.connect({ node: "a" });
  const b = await mesh.connect({ node: "b" });
  b.subscribe("echo", (m) => b.publish(m.reply!, m.data));
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    const d = new Uint8Array(1);
    for (let i = 0; i < 20_000; i++) await a.request("echo", d, { timeout: 1000 });
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks > 0, "the interval ran during the burst");
  await a.close();
  await b.close();
});

test("in-process subscriptions with many subjects route without leaks", async () => {
  const mesh = inProcessMesh();
  const a = await mesh.connect({ node: "a" });
  const subs = [];
  const got = new Map<string, number>();
  for (let i = 0; i < 500; i++) {
    const subject = `troupe.a.acct.${i}`;
    subs.push(a.subscribe(subject, () => got.set(subject, (got.get(subject) ?? 0) + 1)));
  }
  const wild = a.subscribe("troupe.a.*.7", () => got.set("wild", (got.get("wild") ?? 0) + 1));
  for (let i = 0; i < 500; i++) a.publish(`troupe.a.acct.${i}`, new Uint8Array());
  await a.flush();
  await settled(); // delivery runs in microtasks: one macrotask turn sees it done
  assert.equal(got.size, 501);
  assert.equal(got.get("wild"), 1);
  for (const s of subs) s.unsubscribe();
  wild.unsubscribe();
  await assert.rejects(a.request("troupe.a.acct.7", new Uint8Array(), { timeout: 100 }), MeshError);
  await a.close();
});

durableTopicsConformance(
  "in-process mesh",
  () => Promise.resolve({ mesh: inProcessMesh(), cleanup: () => Promise.resolve() }),
);
