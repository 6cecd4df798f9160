import assert from "node:assert/strict";
import { createSystem } from "../../mod.ts";
import { meshConformance, type MeshConnection, MeshError } from "../../spi.ts";
import { type NatsCluster, startNatsCluster } from "../testing/mod.ts";
import { natsMesh, replicatedCasIsSafe } from "./mod.ts";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";

// Servers shared by the conformance runs: started when this module loads (outside any test,
// so that the sanitizers of each test do not see them) and stopped by the last test below.
// The harness also kills them when the process exits, should that test be filtered out.
// The single server carries twice the default max_payload: the mesh must report the server's.
const SINGLE_MAX_PAYLOAD = 2 * 1024 * 1024;
const single: NatsCluster = await startNatsCluster({
  servers: 1,
  maxPayload: SINGLE_MAX_PAYLOAD,
});
const triple: NatsCluster = await startNatsCluster({ servers: 3, websocket: false });

const noCleanup = () => Promise.resolve();

meshConformance("nats mesh (1 server, TCP)", () =>
  Promise.resolve({
    mesh: natsMesh({ servers: single.urls }),
    cleanup: noCleanup,
  }), { maxPayload: SINGLE_MAX_PAYLOAD });

meshConformance("nats mesh (1 server, WebSocket)", () =>
  Promise.resolve({
    mesh: natsMesh({ servers: single.wsUrls }),
    cleanup: noCleanup,
  }), { maxPayload: SINGLE_MAX_PAYLOAD });

meshConformance(
  "nats mesh (3 servers, R3 buckets)",
  () =>
    Promise.resolve({
      // Both nodes on one server: subscription interest reaches the other servers over the
      // routes a moment after flush() returns, which the pub/sub tests of the suite do not
      // wait for (cross-server delivery has its own test below). The buckets are R3.
      mesh: natsMesh({ servers: triple.urls[0]!, replicas: 3 }),
      cleanup: noCleanup,
    }),
  {
    // On nats-server 2.9.10 an R3 bucket checks compare-and-set on the leader before
    // proposing (nats-server #4320, fixed in 2.9.21): two concurrent writes expecting the
    // same revision can both succeed, for update and for create (which expects "no message").
    concurrentUpdate: false,
    ignore: ["kv create: concurrent creates"],
    waitMs: 5000,
    maxPayload: 1024 * 1024, // the default max_payload
  },
);

const enc = new TextEncoder();
const dec = new TextDecoder();

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The iterator's next result, or `undefined` when none came within `ms`. */
async function nextWithin<T>(
  it: AsyncIterator<T>,
  ms: number,
): Promise<IteratorResult<T> | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      it.next(),
      new Promise<undefined>((resolve) =>
        timer = setTimeout(() => resolve(undefined), Math.max(0, ms))
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Retries `fn` until it succeeds or `ms` passed; returns its result and the time taken. */
async function eventually<T>(ms: number, fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  for (;;) {
    try {
      return [await fn(), performance.now() - t0];
    } catch (err) {
      if (performance.now() - t0 > ms) throw err;
      await sleep(100);
    }
  }
}

function echo(conn: MeshConnection, subject: string) {
  return conn.subscribe(subject, (m) => {
    if (m.reply) conn.publish(m.reply, m.data, { headers: m.headers });
  });
}

Deno.test("natsMesh() rejects mixed transports and bad options", () => {
  assert.throws(
    () => natsMesh({ servers: ["nats://127.0.0.1:1", "ws://127.0.0.1:2"] }),
    TypeError,
  );
  assert.throws(() => natsMesh({ servers: [] }), TypeError);
  assert.throws(() => natsMesh({ servers: "http://127.0.0.1:1" }), TypeError);
  assert.throws(() => natsMesh({ servers: "127.0.0.1:1", replicas: 7 }), RangeError);
  const mesh = natsMesh({ servers: "127.0.0.1:4222" });
  assert.equal(mesh.kind, "nats");
  assert.equal(mesh.prefix, "troupe");
  assert.equal(mesh.leaseTtl, 10_000);
});

Deno.test("natsMesh().connect() fails within connectTimeout, naming the servers", async () => {
  const port = (() => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const p = (l.addr as Deno.NetAddr).port;
    l.close();
    return p;
  })();
  const mesh = natsMesh({ servers: `nats://127.0.0.1:${port}`, connectTimeout: 500 });
  const t0 = performance.now();
  await assert.rejects(
    mesh.connect({ node: "x" }),
    (e) => e instanceof MeshError && e.code === "timeout" && e.message.includes(`${port}`),
  );
  assert.ok(performance.now() - t0 < 3000);
});

Deno.test("replicatedCasIsSafe() knows the 2.9.21 fix", () => {
  assert.equal(replicatedCasIsSafe("2.9.10"), false);
  assert.equal(replicatedCasIsSafe("2.9.21"), true);
  assert.equal(replicatedCasIsSafe("2.10.0"), true);
  assert.equal(replicatedCasIsSafe(undefined), false);
});

Deno.test("buckets are R3 by default on a 3-server cluster; an explicit replicas option wins", async () => {
  const a = await natsMesh({ servers: triple.urls }).connect({ node: "r-a" });
  const b = await natsMesh({ servers: triple.urls, replicas: 1 }).connect({ node: "r-b" });
  try {
    const id = crypto.randomUUID().slice(0, 8);
    await a.kv(`rep_default_${id}`);
    await b.kv(`rep_three_${id}`);
    const nc = await connect({ servers: triple.urls });
    try {
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info(`KV_rep_default_${id}`)).config.num_replicas, 3);
      const si = await jsm.streams.info(`KV_rep_three_${id}`);
      assert.equal(si.config.num_replicas, 1);
      assert.equal(si.config.allow_direct, false);
    } finally {
      await nc.close();
    }
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("a subscription sees messages published on another server of the cluster", async () => {
  const a = await natsMesh({ servers: triple.urls[0]! }).connect({ node: "x-a" });
  const b = await natsMesh({ servers: triple.urls[2]! }).connect({ node: "x-b" });
  try {
    const got: string[] = [];
    a.subscribe("troupe.x.*", (m) => got.push(dec.decode(m.data)));
    echo(a, "troupe.echo.x");
    await a.flush();
    // interest travels over the routes
    const [reply] = await eventually(
      3000,
      () => b.request("troupe.echo.x", enc.encode("hi"), { timeout: 500 }),
    );
    assert.equal(dec.decode(reply.data), "hi");
    for (let i = 0; i < 10; i++) b.publish(`troupe.x.${i}`, enc.encode(String(i)));
    await b.flush();
    await eventually(3000, () => got.length === 10 ? Promise.resolve() : Promise.reject());
    assert.deepEqual(got, [...Array(10).keys()].map(String));
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("garbage headers and bodies from a foreign client do not break a node", async () => {
  const conn = await natsMesh({ servers: single.urls }).connect({ node: "g" });
  const errors: unknown[] = [];
  conn.onStatus((s) => {
    if (s.type === "error") errors.push(s.error);
  });
  try {
    const got: { headers: Record<string, string>; data: Uint8Array }[] = [];
    conn.subscribe("troupe.g.>", (m) => got.push({ headers: { ...m.headers }, data: m.data }));
    let throws = 0;
    conn.subscribe("troupe.g.>", () => {
      throws++;
      throw new Error("handler bug");
    });
    await conn.flush();
    const url = new URL(single.urls[0]!);
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: Number(url.port) });
    try {
      const frames = [
        ["NATS/1.0 xyz\r\nno-colon\r\n:\r\n\u00e4: \u00f6\r\n\r\n", "\u0000\u00ff"],
        ["NATS/1.0\r\nk: v\r\n\r\n", ""],
        ["NATS/1.0 503\r\n\r\n", ""],
      ];
      let out =
        'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n';
      frames.forEach(([h, body], i) => {
        const hb = enc.encode(h);
        const bb = enc.encode(body);
        out += `HPUB troupe.g.${i} ${hb.length} ${hb.length + bb.length}\r\n${h}${body}\r\n`;
      });
      out += "PUB troupe.g.raw 4\r\n\u0001\u0002\u0003\u0004\r\nPING\r\n";
      await raw.write(enc.encode(out));
      const buf = new Uint8Array(4096);
      await raw.read(buf); // INFO / PONG
    } finally {
      raw.close();
    }
    await eventually(3000, () => got.length >= 2 ? Promise.resolve() : Promise.reject());
    assert.ok(got.some((m) => m.data.length === 4), "the raw PUB arrived");
    // a node's own bad input is a TypeError, not a crash
    assert.throws(
      () => conn.publish("troupe.g.x", new Uint8Array(1), { headers: { "a b": "1" } }),
      TypeError,
    );
    assert.throws(
      () => conn.publish("troupe.g.x", new Uint8Array(1), { headers: { k: "a\r\nb" } }),
      TypeError,
    );
    assert.throws(() => conn.publish("troupe..g", new Uint8Array(1)), TypeError);
    // still working
    echo(conn, "troupe.echo.g");
    await conn.flush();
    const r = await conn.request("troupe.echo.g", enc.encode("ok"), {
      timeout: 2000,
      headers: { k: "v" },
    });
    assert.equal(dec.decode(r.data), "ok");
    assert.equal(r.headers["k"], "v");
    assert.ok(throws >= 2);
    assert.ok(errors.length >= 2, "handler errors are reported through onStatus");
  } finally {
    await conn.close();
  }
});

Deno.test({
  name:
    "SIGKILL of the server a node is bound to: it reconnects; request/reply, KV and watch keep working",
  async fn() {
    await using cluster = await startNatsCluster({ servers: 3, websocket: false });
    const a = await natsMesh({ servers: cluster.urls[0]!, replicas: 3 }).connect({ node: "k-a" });
    const b = await natsMesh({ servers: cluster.urls[2]!, replicas: 3 }).connect({ node: "k-b" });
    const statuses: string[] = [];
    a.onStatus((s) => statuses.push(s.type));
    try {
      echo(b, "troupe.echo.k");
      await b.flush();
      await eventually(3000, () => a.request("troupe.echo.k", enc.encode("1"), { timeout: 500 }));
      const ka = await a.kv("troupe_kill");
      const kb = await b.kv("troupe_kill");
      const incarnation = ka.incarnation;
      const r1 = await ka.put("k", enc.encode("before"));
      const watch = ka.watch({ initial: false });
      const it = watch[Symbol.asyncIterator]();
      try {
        // the watch is established (a watch still being set up when its stream loses its
        // leader starts at "now" once it is set up, and misses what was written meanwhile)
        const r0 = await kb.put("w0", enc.encode("x"));
        const first = await it.next();
        assert.equal(first.done ? 0 : first.value.revision, r0);
        await cluster.servers[0]!.kill("SIGKILL");
        // written while `a` is disconnected: what its consumer pushed meanwhile is lost on
        // the way, and the watch must notice the gap and fetch it again
        const [rDuring] = await eventually(15_000, () => kb.put("during", enc.encode("d")));
        const [reply, tReq] = await eventually(
          15_000,
          () => a.request("troupe.echo.k", enc.encode("2"), { timeout: 500 }),
        );
        assert.equal(dec.decode(reply.data), "2");
        const [r2, tPut] = await eventually(15_000, () => ka.update("k", enc.encode("after"), r1));
        assert.ok(r2 > r1);
        const [e, tGet] = await eventually(15_000, () => kb.get("k"));
        assert.equal(dec.decode(e!.value), "after");
        // the watch (its consumer may have lived on the dead server) sees later writes
        const r3 = await kb.put("w", enc.encode("seen"));
        const seen: number[] = [];
        const t0 = performance.now();
        // a consumer on the dead server is recreated once JetStream has a meta leader again
        // (~5 s) and places it on a live server (see NatsMeshConnection.jsmWithTimeout)
        while (!seen.includes(r3) && performance.now() - t0 < 30_000) {
          const n = await nextWithin(it, 30_000 - (performance.now() - t0));
          if (!n || n.done) break;
          seen.push(n.value.revision);
        }
        assert.ok(seen.includes(rDuring), `the watch saw the write during the outage (${seen})`);
        assert.ok(seen.includes(r2), `the watch saw the update (${seen})`);
        assert.ok(seen.includes(r3), `the watch saw the later put (${seen})`);
        console.log(
          `  recovered after SIGKILL: request ${tReq.toFixed(0)} ms, update ${
            tPut.toFixed(0)
          } ms, get ${tGet.toFixed(0)} ms, watch ${(performance.now() - t0).toFixed(0)} ms`,
        );
        assert.ok(statuses.includes("disconnect") && statuses.includes("reconnect"), `${statuses}`);
        // the bucket is the same incarnation on the new leader
        const again = await a.kv("troupe_kill");
        assert.equal(again.incarnation, incarnation);
      } finally {
        watch.stop();
      }
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test("a node never gives up reconnecting (server down for longer than 10 attempts)", async () => {
  await using cluster = await startNatsCluster({ servers: 1, websocket: false });
  const a = await natsMesh({ servers: cluster.urls }).connect({ node: "n-a" });
  const statuses: string[] = [];
  a.onStatus((s) => statuses.push(s.type));
  try {
    echo(a, "troupe.echo.n");
    await a.flush();
    await cluster.servers[0]!.kill("SIGKILL");
    await sleep(5000); // 250 ms ± 100 ms between attempts: well over 10 attempts
    await cluster.servers[0]!.restart();
    const [reply, t] = await eventually(
      10_000,
      () => a.request("troupe.echo.n", enc.encode("back"), { timeout: 500 }),
    );
    assert.equal(dec.decode(reply.data), "back");
    assert.ok(t < 5000, `back after ${t} ms`);
    assert.ok(statuses.includes("reconnect"));
    const kv = await a.kv("troupe_back");
    assert.ok(await kv.put("k", enc.encode("v")) > 0);
  } finally {
    await a.close();
  }
});

Deno.test("lease tokens keep increasing when an operator deletes and recreates the leases bucket", async () => {
  const prefix = `lt${crypto.randomUUID().slice(0, 8)}`;
  const mesh = natsMesh({ servers: single.urls, prefix });
  const system = await createSystem({ mesh, node: "lt-a", logger: "error" });
  const conn = await mesh.connect({ node: "lt-tool" });
  try {
    const tokens: number[] = [];
    const ttl = 600;
    for (let i = 0; i < 3; i++) await system.lock("job", (l) => void tokens.push(l.token), { ttl });
    const held = await system.lease("other", { ttl });
    // The operator's tools: the JetStream API, not the mesh.
    const nc = await connect({ servers: single.urls });
    try {
      await (await jetstreamManager(nc)).streams.delete(`KV_${prefix}_leases`);
    } finally {
      await nc.close();
    }
    await conn.kv(`${prefix}_leases`); // created again: revisions restart at 1
    await eventually(10_000, () => Promise.resolve(assert.ok(held.signal.aborted, "held lost")));
    await system.lock("job", (l) => void tokens.push(l.token), { ttl });
    for (let i = 1; i < tokens.length; i++) {
      assert.ok(tokens[i]! > tokens[i - 1]!, `tokens ${tokens.join(", ")} strictly increase`);
    }
  } finally {
    await system.close();
    await conn.close();
  }
});

Deno.test({
  name: "(stop the shared nats servers)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await single.stop();
    await triple.stop();
  },
});
