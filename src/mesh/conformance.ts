/**
 * The conformance suite of the {@link Mesh} port: the behaviour every mesh (in-process and
 * NATS) must show. Call {@link meshConformance} from a test file; it registers one
 * `Deno.test` per behaviour. Most tests use two connections (two nodes) of one mesh.
 *
 * Every wait is bounded, so a broken mesh fails instead of hanging, and every subject and
 * bucket name carries a random suffix, so the suite can run against a shared server.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type KvEntry,
  type KvWatch,
  type Mesh,
  type MeshConnection,
  MeshError,
  type MeshErrorCode,
  type MeshMessage,
} from "./types.ts";

/**
 * What {@link meshConformance} needs for each test: a fresh mesh and how to dispose of it.
 *
 * @example
 * ```ts
 * import { inProcessMesh } from "@troupe/troupe";
 * import type { MeshFixture } from "@troupe/troupe/spi";
 *
 * const fixture: MeshFixture = { mesh: inProcessMesh(), cleanup: () => Promise.resolve() };
 * ```
 */
export interface MeshFixture {
  /** The mesh under test. */
  mesh: Mesh;
  /** Called after the test closed its connections. */
  cleanup(): Promise<void>;
}

/**
 * Options of {@link meshConformance}.
 *
 * @example
 * ```ts
 * import { inProcessMesh } from "@troupe/troupe";
 * import { meshConformance, type MeshConformanceOptions } from "@troupe/troupe/spi";
 *
 * // e.g. a replicated (R3) NATS 2.9.10 bucket, where concurrent CAS is not serialized
 * const options: MeshConformanceOptions = {
 *   concurrentUpdate: false,
 *   ignore: ["kv create: concurrent creates"],
 *   waitMs: 5000,
 * };
 * meshConformance(
 *   "r3 mesh",
 *   () => Promise.resolve({ mesh: inProcessMesh(), cleanup: () => Promise.resolve() }),
 *   options,
 * );
 * ```
 */
export interface MeshConformanceOptions {
  /**
   * Whether to run "kv update: concurrent updates with one revision, exactly one wins
   * (serialized CAS, R1)". Turn it off for a replicated (R3) NATS 2.9.10 bucket, where
   * compare-and-set is checked only on the leader before proposing (nats-server #4320).
   * @default {true}
   */
  concurrentUpdate?: boolean;
  /** Bound, in ms, of every wait for a message or a watch entry. @default {3000} */
  waitMs?: number;
  /**
   * Tests to register as ignored: those whose title (without the suite's name) contains one
   * of these strings. For a mesh known to differ on a point, say why next to the option, e.g.
   * `["kv create: concurrent creates"]` on an R3 bucket of nats-server 2.9.10 (#4320).
   * @default {[]}
   */
  ignore?: readonly string[];
  /**
   * The `maxPayload` every connection must report, when known (a NATS server's
   * `max_payload`). @default {not checked: any positive value}
   */
  maxPayload?: number;
}

/**
 * Registers the mesh conformance tests (`Deno.test`) under the prefix `name`.
 *
 * @example
 * ```ts
 * import { inProcessMesh } from "@troupe/troupe";
 * import { meshConformance } from "@troupe/troupe/spi";
 *
 * meshConformance("in-process mesh", () =>
 *   Promise.resolve({ mesh: inProcessMesh(), cleanup: () => Promise.resolve() }));
 * ```
 */
export function meshConformance(
  name: string,
  setup: () => Promise<MeshFixture>,
  options: MeshConformanceOptions = {},
): void {
  const waitMs = options.waitMs ?? 3000;
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const bytes = (s: string) => enc.encode(s);
  const text = (b: Uint8Array) => dec.decode(b);

  interface Ctx {
    mesh: Mesh;
    /** Node "a". */
    a: MeshConnection;
    /** Node "b". */
    b: MeshConnection;
    /** A subject unique to this test. */
    base: string;
    /** A bucket name unique to this test. */
    bucket: string;
  }

  function test(title: string, fn: (ctx: Ctx) => Promise<void>, ignore = false): void {
    Deno.test({
      name: `${name}: ${title}`,
      ignore: ignore || (options.ignore ?? []).some((part) => title.includes(part)),
      // Deno 2.9 leaves the ops sanitizer off by default: leaked timers must fail here.
      sanitizeOps: true,
      sanitizeResources: true,
      async fn() {
        const { mesh, cleanup } = await setup();
        const id = uid();
        const conns: MeshConnection[] = [];
        try {
          conns.push(await mesh.connect({ node: `conf-a-${id}` }));
          conns.push(await mesh.connect({ node: `conf-b-${id}` }));
          await fn({
            mesh,
            a: conns[0]!,
            b: conns[1]!,
            base: `${mesh.prefix}.conf.${id}`,
            bucket: `${mesh.prefix}_conf_${id}`,
          });
        } finally {
          await Promise.allSettled(conns.map((c) => c.close()));
          await cleanup();
        }
      },
    });
  }

  /** Collects a subscription's messages; `until(n)` waits (bounded) for n of them. */
  function collector() {
    const msgs: MeshMessage[] = [];
    let waiter: { n: number; resolve(): void } | undefined;
    return {
      msgs,
      handler(msg: MeshMessage) {
        msgs.push(msg);
        if (waiter && msgs.length >= waiter.n) {
          waiter.resolve();
          waiter = undefined;
        }
      },
      until(n: number): Promise<void> {
        if (msgs.length >= n) return Promise.resolve();
        const p = new Promise<void>((resolve) => waiter = { n, resolve });
        return bounded(p, waitMs, `${n} messages (got ${msgs.length})`);
      },
    };
  }

  /** Reads `n` entries from a watch, each within the bound. */
  async function take(it: AsyncIterator<KvEntry>, n: number): Promise<KvEntry[]> {
    const out: KvEntry[] = [];
    while (out.length < n) {
      const r = await bounded(it.next(), waitMs, `watch entry ${out.length + 1} of ${n}`);
      assert.equal(r.done, false, `watch ended after ${out.length} of ${n} entries`);
      out.push(r.value);
    }
    return out;
  }

  async function withWatch<T>(w: KvWatch, fn: (it: AsyncIterator<KvEntry>) => Promise<T>) {
    try {
      await bounded(Promise.resolve(w.ready), waitMs, "the watch to be ready");
      return await fn(w[Symbol.asyncIterator]());
    } finally {
      w.stop();
    }
  }

  // ----------------------------------------------------------------------------- pub/sub

  test("publish reaches a subscriber on another connection", async ({ a, b, base }) => {
    const c = collector();
    b.subscribe(`${base}.x`, c.handler);
    await b.flush();
    a.publish(`${base}.x`, bytes("hello"));
    await a.flush();
    await c.until(1);
    const m = c.msgs[0]!;
    assert.equal(m.subject, `${base}.x`);
    assert.equal(text(m.data), "hello");
    assert.deepEqual({ ...m.headers }, {});
    assert.equal(m.reply, undefined);
  });

  test("handlers are called asynchronously, never inside publish", async ({ a, base }) => {
    const c = collector();
    a.subscribe(`${base}.x`, c.handler);
    a.publish(`${base}.x`, bytes("1"));
    assert.equal(c.msgs.length, 0);
    await c.until(1);
  });

  test("wildcard * matches exactly one token", async ({ a, b, base }) => {
    const c = collector();
    b.subscribe(`${base}.*.x`, c.handler);
    await b.flush();
    for (const s of ["1.x", "1.y", "1.2.x", "x", "2.x.y", "2.x"]) {
      a.publish(`${base}.${s}`, bytes(s));
    }
    await c.until(2);
    await sleep(50);
    assert.deepEqual(c.msgs.map((m) => m.subject), [`${base}.1.x`, `${base}.2.x`]);
  });

  test("wildcard > matches one or more trailing tokens", async ({ a, b, base }) => {
    const c = collector();
    b.subscribe(`${base}.p.>`, c.handler);
    await b.flush();
    for (const s of ["p", "q.1", "p.1", "pp.1", "p.1.2.3"]) a.publish(`${base}.${s}`, bytes(s));
    await c.until(2);
    await sleep(50);
    assert.deepEqual(c.msgs.map((m) => m.subject), [`${base}.p.1`, `${base}.p.1.2.3`]);
  });

  test("a literal subscription does not match longer or shorter subjects", async ({ a, b, base }) => {
    const c = collector();
    b.subscribe(`${base}.x.y`, c.handler);
    await b.flush();
    for (const s of ["x", "x.y.z", "x.yy", "x.y"]) a.publish(`${base}.${s}`, bytes(s));
    await c.until(1);
    await sleep(50);
    assert.deepEqual(c.msgs.map((m) => m.subject), [`${base}.x.y`]);
  });

  test("queue group delivers each message to exactly one member; plain subs get all", async ({ a, b, base }) => {
    const members = [collector(), collector(), collector()];
    const plain = collector();
    a.subscribe(`${base}.job`, members[0]!.handler, { queue: "workers" });
    b.subscribe(`${base}.job`, members[1]!.handler, { queue: "workers" });
    b.subscribe(`${base}.*`, members[2]!.handler, { queue: "workers" });
    b.subscribe(`${base}.job`, plain.handler);
    await a.flush();
    await b.flush();
    const n = 90;
    for (let i = 0; i < n; i++) a.publish(`${base}.job`, bytes(String(i)));
    await plain.until(n);
    const total = () => members.reduce((sum, m) => sum + m.msgs.length, 0);
    const deadline = Date.now() + waitMs;
    while (total() < n && Date.now() < deadline) await sleep(10);
    await sleep(50);
    const seen = members.flatMap((m) => m.msgs.map((x) => Number(text(x.data))));
    assert.equal(seen.length, n, "each message reached exactly one member");
    assert.deepEqual([...new Set(seen)].sort((x, y) => x - y), [...Array(n).keys()]);
    for (const m of members) assert.ok(m.msgs.length > 0, "every member got some messages");
    assert.equal(plain.msgs.length, n);
  });

  test("messages to one subscription arrive in publish order (1000)", async ({ a, b, base }) => {
    const c = collector();
    b.subscribe(`${base}.seq`, c.handler);
    await b.flush();
    const n = 1000;
    for (let i = 0; i < n; i++) {
      const d = new Uint8Array(4);
      new DataView(d.buffer).setUint32(0, i);
      a.publish(`${base}.seq`, d);
    }
    await a.flush();
    await c.until(n);
    const got = c.msgs.map((m) => new DataView(m.data.buffer, m.data.byteOffset).getUint32(0));
    assert.deepEqual(got, [...Array(n).keys()]);
  });

  test("headers round-trip, including empty headers", async ({ a, b, base }) => {
    const c = collector();
    b.subscribe(`${base}.h`, c.handler);
    await b.flush();
    const headers = { "Troupe-Id": "m-1", "x-lower": "a b=c", Mixed: "ünï" };
    a.publish(`${base}.h`, bytes("1"), { headers });
    a.publish(`${base}.h`, bytes("2"), { headers: {} });
    a.publish(`${base}.h`, bytes("3"));
    await c.until(3);
    assert.deepEqual({ ...c.msgs[0]!.headers }, headers);
    assert.deepEqual({ ...c.msgs[1]!.headers }, {});
    assert.deepEqual({ ...c.msgs[2]!.headers }, {});
  });

  test("publish with a reply subject carries it", async ({ a, b, base }) => {
    const c = collector();
    b.subscribe(`${base}.r`, c.handler);
    await b.flush();
    const inbox = a.inbox();
    assert.notEqual(inbox, a.inbox(), "inbox() is unique");
    a.publish(`${base}.r`, bytes("1"), { reply: inbox });
    await c.until(1);
    assert.equal(c.msgs[0]!.reply, inbox);
  });

  test("unsubscribe stops delivery and is idempotent", async ({ a, b, base }) => {
    const c = collector();
    const sub = b.subscribe(`${base}.u`, c.handler);
    assert.equal(sub.subject, `${base}.u`);
    await b.flush();
    a.publish(`${base}.u`, bytes("1"));
    await c.until(1);
    sub.unsubscribe();
    sub.unsubscribe();
    await b.flush();
    a.publish(`${base}.u`, bytes("2"));
    await a.flush();
    await sleep(100);
    assert.equal(c.msgs.length, 1);
    await assertMeshError(
      a.request(`${base}.u`, bytes("3"), { timeout: waitMs }),
      "no_responders",
    );
  });

  // ----------------------------------------------------------------------------- request

  test("request gets the reply of a responder on another connection", async ({ a, b, base }) => {
    b.subscribe(`${base}.echo`, (m) => {
      b.publish(m.reply!, bytes(`re:${text(m.data)}`), { headers: { n: m.headers["n"] ?? "" } });
    });
    await b.flush();
    const replies = await Promise.all(
      [...Array(20).keys()].map((i) =>
        a.request(`${base}.echo`, bytes(String(i)), { timeout: waitMs, headers: { n: `${i}` } })
      ),
    );
    replies.forEach((r, i) => {
      assert.equal(text(r.data), `re:${i}`);
      assert.equal(r.headers["n"], `${i}`);
    });
  });

  test("request resolves with the first reply when several responders answer", async ({ a, b, base }) => {
    b.subscribe(`${base}.many`, (m) => b.publish(m.reply!, bytes("b")));
    a.subscribe(`${base}.many`, (m) => a.publish(m.reply!, bytes("a")));
    await b.flush();
    const r = await a.request(`${base}.many`, bytes(""), { timeout: waitMs });
    assert.ok(["a", "b"].includes(text(r.data)));
  });

  test("request to a queue group is answered once", async ({ a, b, base }) => {
    let calls = 0;
    for (const c of [a, b, b]) {
      c.subscribe(`${base}.q`, (m) => {
        calls++;
        c.publish(m.reply!, bytes("ok"));
      }, { queue: "g" });
    }
    await a.flush();
    await b.flush();
    for (let i = 0; i < 10; i++) {
      assert.equal(text((await a.request(`${base}.q`, bytes(""), { timeout: waitMs })).data), "ok");
    }
    await sleep(50);
    assert.equal(calls, 10);
  });

  test("request rejects with no_responders at once when nothing subscribes", async ({ a, base }) => {
    const t0 = Date.now();
    await assertMeshError(a.request(`${base}.none`, bytes(""), { timeout: 5000 }), "no_responders");
    assert.ok(Date.now() - t0 < 2000, "no_responders came at once, not after the timeout");
  });

  test("request rejects with timeout when no reply comes", async ({ a, b, base }) => {
    b.subscribe(`${base}.silent`, () => {});
    await b.flush();
    const t0 = Date.now();
    await assertMeshError(a.request(`${base}.silent`, bytes(""), { timeout: 100 }), "timeout");
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 90 && elapsed < 2000, `timed out after ${elapsed} ms`);
  });

  test("request rejects with the signal's reason when aborted", async ({ a, b, base }) => {
    b.subscribe(`${base}.silent`, () => {});
    await b.flush();
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 30);
    const t0 = Date.now();
    try {
      await assert.rejects(
        a.request(`${base}.silent`, bytes(""), { timeout: 5000, signal: ac.signal }),
        (e) => e === ac.signal.reason,
      );
    } finally {
      clearTimeout(timer);
    }
    assert.ok(Date.now() - t0 < 2000, "aborted before the timeout");
    await assert.rejects(
      a.request(`${base}.silent`, bytes(""), { timeout: 5000, signal: AbortSignal.abort() }),
      (e) => e instanceof DOMException && e.name === "AbortError",
    );
  });

  test("request's handle cancels it while it waits, and is cleared once it settled", async ({ a, b, base }) => {
    b.subscribe(`${base}.silent`, () => {});
    b.subscribe(`${base}.echo`, (m) => m.reply && b.publish(m.reply, m.data));
    await b.flush();
    const handle: { cancel?: ((reason: unknown) => void) | undefined } = {};
    const waiting = a.request(`${base}.silent`, bytes(""), { timeout: 5000, handle });
    assert.equal(typeof handle.cancel, "function", "set while the request waits");
    const reason = new Error("moved");
    const t0 = Date.now();
    handle.cancel!(reason);
    await assert.rejects(waiting, (e) => e === reason);
    assert.ok(Date.now() - t0 < 2000, "cancelled before the timeout");
    assert.equal(handle.cancel, undefined, "cleared once settled");
    const answered = {} as typeof handle;
    const reply = await a.request(`${base}.echo`, bytes("hi"), { timeout: 5000, handle: answered });
    assert.equal(new TextDecoder().decode(reply.data), "hi");
    assert.equal(answered.cancel, undefined, "cleared once answered");
  });

  test("publish and request larger than maxPayload fail with max_payload", async ({ a, b, base }) => {
    assert.ok(a.maxPayload > 0);
    const c = collector();
    b.subscribe(`${base}.big`, c.handler);
    await b.flush();
    const big = new Uint8Array(a.maxPayload + 1);
    assert.throws(() => a.publish(`${base}.big`, big), isMeshError("max_payload"));
    await assertMeshError(a.request(`${base}.big`, big, { timeout: 1000 }), "max_payload");
    const ok = new Uint8Array(Math.min(a.maxPayload - 1024, 64 * 1024)).fill(7);
    a.publish(`${base}.big`, ok);
    await c.until(1);
    assert.equal(c.msgs[0]!.data.byteLength, ok.byteLength);
    assert.equal(c.msgs[0]!.data[ok.byteLength - 1], 7);
  });

  test("maxPayload is the limit: a message of exactly that size is carried", async ({ a, b, base }) => {
    if (options.maxPayload !== undefined) assert.equal(a.maxPayload, options.maxPayload);
    assert.equal(b.maxPayload, a.maxPayload, "one limit for the whole mesh");
    assert.ok(a.maxPayload > 0);
    if (!Number.isFinite(a.maxPayload)) return; // no limit: nothing to send at it
    const c = collector();
    b.subscribe(`${base}.exact`, c.handler);
    await b.flush();
    const exact = new Uint8Array(a.maxPayload).fill(3);
    a.publish(`${base}.exact`, exact);
    await c.until(1);
    assert.equal(c.msgs[0]!.data.byteLength, a.maxPayload);
    assert.equal(c.msgs[0]!.data[a.maxPayload - 1], 3);
  });

  // ----------------------------------------------------------------------------- close

  test("close() removes the node's subscriptions and later calls throw closed", async ({ a, b, base, bucket }) => {
    b.subscribe(`${base}.svc`, (m) => b.publish(m.reply!, bytes("up")));
    const kv = await b.kv(bucket);
    await b.flush();
    assert.equal(text((await a.request(`${base}.svc`, bytes(""), { timeout: waitMs })).data), "up");
    await b.close();
    await b.close(); // idempotent
    await assertMeshError(
      a.request(`${base}.svc`, bytes(""), { timeout: waitMs }),
      "no_responders",
    );
    assert.throws(() => b.publish(`${base}.svc`, bytes("")), isMeshError("closed"));
    assert.throws(() => b.subscribe(`${base}.svc`, () => {}), isMeshError("closed"));
    await assertMeshError(b.request(`${base}.svc`, bytes(""), { timeout: 100 }), "closed");
    await assertMeshError(b.flush(), "closed");
    await assertMeshError(b.kv(bucket), "closed");
    await assertMeshError(kv.put("k", bytes("v")), "closed");
    await assertMeshError(kv.get("k"), "closed");
  });

  test("close() rejects the node's requests in flight with closed", async ({ a, b, base }) => {
    b.subscribe(`${base}.silent`, () => {});
    await b.flush();
    const pending = a.request(`${base}.silent`, bytes(""), { timeout: waitMs });
    await a.flush();
    await a.close();
    await assertMeshError(pending, "closed");
  });

  // ----------------------------------------------------------------------------- kv

  test("kv put/get: entry fields, copies, missing key, seen from another node", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    assert.equal(ka.name, bucket);
    const value = bytes("v1");
    const rev = await ka.put("k.one", value);
    value[0] = 0; // the store keeps what was written
    assert.ok(rev > 0);
    const e = await kb.get("k.one");
    assert.ok(e);
    assert.equal(e.key, "k.one");
    assert.equal(text(e.value), "v1");
    assert.equal(e.revision, rev);
    assert.equal(e.operation, "PUT");
    assert.equal(await kb.get("k.missing"), null);
    const rev2 = await kb.put("k.one", bytes("v2"));
    assert.ok(rev2 > rev);
    assert.equal(text((await ka.get("k.one"))!.value), "v2");
  });

  test("kv incarnation is shared by the nodes of one bucket, distinct per bucket", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    const other = await a.kv(`${bucket}_2`);
    assert.equal(typeof ka.incarnation, "string");
    assert.ok(ka.incarnation.length > 0);
    assert.equal(ka.incarnation, kb.incarnation);
    assert.notEqual(ka.incarnation, other.incarnation);
  });

  test("kv incarnationNow() reports the bucket's incarnation and its creation time", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    const now = await ka.incarnationNow();
    assert.equal(now.id, ka.incarnation);
    assert.deepEqual(await kb.incarnationNow(), now);
    assert.ok(Number.isSafeInteger(now.createdAt), `createdAt ${now.createdAt}`);
    // a server clock may differ from ours, but not by a day
    assert.ok(Math.abs(now.createdAt - Date.now()) < 86_400_000, `createdAt ${now.createdAt}`);
  });

  test("kv deleteKv(): a bucket created again is a later incarnation, which old handles use", async ({ a, b, bucket }) => {
    if (!a.deleteKv) return; // optional: nothing to check on a mesh that does not offer it
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    await ka.put("k", bytes("old"));
    const oldRev = await ka.put("k", bytes("old2"));
    const old = await ka.incarnationNow();
    await a.deleteKv(bucket);
    await assertMeshError(kb.incarnationNow(), "no_responders");
    await a.deleteKv(bucket); // idempotent
    const kc = await b.kv(bucket); // created again
    assert.notEqual(kc.incarnation, old.id);
    const now = await kb.incarnationNow(); // through a handle opened before
    assert.equal(now.id, kc.incarnation);
    assert.ok(now.createdAt > old.createdAt, `${now.createdAt} > ${old.createdAt}`);
    assert.equal(await ka.get("k"), null, "the keys went with the bucket");
    const rev = await ka.put("k", bytes("new"));
    assert.ok(rev < oldRev, "revisions start again: tokens need the incarnation");
    assert.equal(text((await kc.get("k"))!.value), "new");
  });

  test("kv create fails with kv_conflict when the key exists", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    const rev = await ka.create("lock", bytes("a"));
    assert.ok(rev > 0);
    await assertMeshError(kb.create("lock", bytes("b")), "kv_conflict");
    await assertMeshError(ka.create("lock", bytes("c")), "kv_conflict");
    assert.equal(text((await kb.get("lock"))!.value), "a");
  });

  test("kv create succeeds after delete; get of a deleted key is null", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    const r1 = await ka.create("lock", bytes("a"));
    await ka.delete("lock");
    assert.equal(await kb.get("lock"), null);
    const r2 = await kb.create("lock", bytes("b"));
    assert.ok(r2 > r1);
    const e = await ka.get("lock");
    assert.equal(text(e!.value), "b");
    assert.equal(e!.revision, r2);
    await assertMeshError(ka.create("lock", bytes("c")), "kv_conflict");
  });

  test("kv update succeeds on the latest revision and conflicts otherwise", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    const r1 = await ka.put("k", bytes("1"));
    const r2 = await kb.update("k", bytes("2"), r1);
    assert.ok(r2 > r1);
    await assertMeshError(ka.update("k", bytes("3"), r1), "kv_conflict");
    await assertMeshError(ka.update("k", bytes("3"), r2 + 100), "kv_conflict");
    const e = await ka.get("k");
    assert.equal(text(e!.value), "2");
    assert.equal(e!.revision, r2);
    const r3 = await ka.update("k", bytes("3"), r2);
    assert.ok(r3 > r2);
  });

  test("kv delete with a revision conflicts unless it is the latest", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    const r1 = await ka.put("k", bytes("1"));
    const r2 = await ka.put("k", bytes("2"));
    await assertMeshError(kb.delete("k", { revision: r1 }), "kv_conflict");
    assert.equal(text((await ka.get("k"))!.value), "2");
    await kb.delete("k", { revision: r2 });
    assert.equal(await ka.get("k"), null);
    assert.deepEqual(await ka.keys(), []);
  });

  test("kv keys lists live keys matching a filter", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    for (const k of ["a.1", "a.2", "b.1", "a.3", "a.x.1"]) await ka.put(k, bytes(k));
    await kb.delete("a.3");
    const sorted = (xs: string[]) => [...xs].sort();
    assert.deepEqual(sorted(await kb.keys()), ["a.1", "a.2", "a.x.1", "b.1"]);
    assert.deepEqual(sorted(await kb.keys(">")), ["a.1", "a.2", "a.x.1", "b.1"]);
    assert.deepEqual(sorted(await kb.keys("a.*")), ["a.1", "a.2"]);
    assert.deepEqual(sorted(await kb.keys("a.>")), ["a.1", "a.2", "a.x.1"]);
    assert.deepEqual(await kb.keys("c.*"), []);
  });

  test("kv revisions strictly increase across keys and nodes", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    let last = 0;
    for (let i = 0; i < 20; i++) {
      const kv = i % 2 === 0 ? ka : kb;
      let rev: number;
      if (i % 3 === 0) rev = await kv.put(`k${i % 4}`, bytes(String(i)));
      else if (i % 3 === 1) rev = await kv.create(`c${i}`, bytes(String(i)));
      else {
        await kv.delete(`k${i % 4}`);
        const e = await kv.get(`k${i % 4}`);
        assert.equal(e, null);
        rev = await kv.put(`k${i % 4}`, bytes("x"));
      }
      assert.ok(rev > last, `revision ${rev} after ${last}`);
      last = rev;
    }
  });

  test("kv watch yields the latest of each live key, then live changes", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    await ka.put("k1", bytes("1"));
    await ka.put("k2", bytes("old"));
    await ka.put("k3", bytes("gone"));
    await ka.put("k2", bytes("new"));
    await ka.delete("k3");
    await withWatch(kb.watch(), async (it) => {
      const initial = await take(it, 2);
      assert.deepEqual(initial.map((e) => [e.key, text(e.value)]), [["k1", "1"], ["k2", "new"]]);
      await ka.put("k4", bytes("4"));
      await ka.put("k1", bytes("1b"));
      const live = await take(it, 2);
      assert.deepEqual(live.map((e) => [e.key, text(e.value), e.operation]), [
        ["k4", "4", "PUT"],
        ["k1", "1b", "PUT"],
      ]);
      const revs = [...initial, ...live].map((e) => e.revision);
      assert.deepEqual(revs, [...revs].sort((x, y) => x - y));
    });
  });

  test("kv watch with initial: false yields only later changes", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    await ka.put("k1", bytes("1"));
    await withWatch(kb.watch({ initial: false }), async (it) => {
      await ka.put("k2", bytes("2"));
      const [e] = await take(it, 1);
      assert.equal(e!.key, "k2");
    });
  });

  test("kv watch sees deletes", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    await withWatch(kb.watch(), async (it) => {
      // (a put deleted at once may be superseded before the watch reads it: see KvWatch)
      const r1 = await ka.put("k", bytes("1"));
      const [put] = await take(it, 1);
      assert.equal(put!.operation, "PUT");
      assert.equal(put!.revision, r1);
      await ka.delete("k");
      const [del] = await take(it, 1);
      assert.equal(del!.key, "k");
      assert.equal(del!.operation, "DEL");
      assert.ok(del!.revision > r1);
    });
  });

  test("kv watch on a key pattern yields only matching keys", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    await ka.put("b.0", bytes("x"));
    await ka.put("a.0", bytes("x"));
    await withWatch(kb.watch({ key: "a.*" }), async (it) => {
      for (const k of ["b.1", "a.1", "a.x.y", "a", "a.2"]) await ka.put(k, bytes(k));
      const got = await take(it, 3);
      assert.deepEqual(got.map((e) => e.key), ["a.0", "a.1", "a.2"]);
    });
  });

  test("kv watch ends on stop()", async ({ a, bucket }) => {
    const ka = await a.kv(bucket);
    await ka.put("k", bytes("1"));
    const w = ka.watch();
    const seen: string[] = [];
    const loop = (async () => {
      for await (const e of w) seen.push(e.key);
    })();
    const deadline = Date.now() + waitMs;
    while (seen.length === 0 && Date.now() < deadline) await sleep(5);
    w.stop();
    w.stop(); // idempotent
    await bounded(loop, waitMs, "the watch to end");
    assert.deepEqual(seen, ["k"]);
  });

  test("kv watch ends when its connection closes", async ({ b, bucket }) => {
    const kb = await b.kv(bucket);
    const w = kb.watch();
    const loop = (async () => {
      for await (const _ of w) { /* nothing */ }
    })();
    await b.close();
    await bounded(loop, waitMs, "the watch to end");
    w.stop();
  });

  test("kv create: concurrent creates of one key from two nodes, exactly one wins", async ({ a, b, bucket }) => {
    const ka = await a.kv(bucket);
    const kb = await b.kv(bucket);
    for (let i = 0; i < 20; i++) {
      const key = `race.${i}`;
      if (i % 2 === 1) await ka.create(key, bytes("old")).then(() => ka.delete(key));
      const results = await Promise.allSettled([
        ka.create(key, bytes("a")),
        kb.create(key, bytes("b")),
      ]);
      assertOneWinner(results);
    }
  });

  test(
    "kv update: concurrent updates with one revision, exactly one wins (serialized CAS, R1)",
    async ({ a, b, bucket }) => {
      const ka = await a.kv(bucket);
      const kb = await b.kv(bucket);
      for (let i = 0; i < 20; i++) {
        const key = `race.${i}`;
        const rev = await ka.put(key, bytes("0"));
        const results = await Promise.allSettled([
          ka.update(key, bytes("a"), rev),
          kb.update(key, bytes("b"), rev),
        ]);
        assertOneWinner(results);
      }
    },
    options.concurrentUpdate === false,
  );
}

function assertOneWinner(results: PromiseSettledResult<number>[]): void {
  const won = results.filter((r) => r.status === "fulfilled");
  const lost = results.filter((r) => r.status === "rejected");
  assert.equal(won.length, 1, "exactly one writer wins");
  const reason = (lost[0] as PromiseRejectedResult).reason;
  assert.ok(isMeshError("kv_conflict")(reason), `loser got ${reason}`);
}

function isMeshError(code: MeshErrorCode): (e: unknown) => boolean {
  return (e) => e instanceof MeshError && e.code === code;
}

async function assertMeshError(p: Promise<unknown>, code: MeshErrorCode): Promise<void> {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof MeshError, `expected MeshError("${code}"), got ${e}`);
    assert.equal(e.code, code);
    return true;
  });
}

function uid(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 10);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects if `p` does not settle within `ms`; always clears its timer. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}
