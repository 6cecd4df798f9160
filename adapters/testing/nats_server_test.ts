import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { wsconnect } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { findNatsServer, startNatsCluster } from "./nats_server.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("findNatsServer() returns an existing binary", () => {
  const path = findNatsServer();
  assert.ok(Deno.statSync(path).isFile);
});

Deno.test("startNatsCluster() starts one server reachable over TCP and WebSocket", async () => {
  const cluster = await startNatsCluster();
  try {
    assert.equal(cluster.urls.length, 1);
    assert.equal(cluster.wsUrls.length, 1);
    assert.match(cluster.urls[0]!, /^nats:\/\/127\.0\.0\.1:\d+$/);
    assert.match(cluster.wsUrls[0]!, /^ws:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(cluster.servers[0]!.pid! > 0);
    const nc = await connect({ servers: cluster.urls });
    const ws = await wsconnect({ servers: cluster.wsUrls });
    try {
      const sub = nc.subscribe("echo", {
        callback: (_err, msg) => {
          msg.respond(msg.data);
        },
      });
      await nc.flush();
      const reply = await ws.request("echo", enc.encode("hi"), { timeout: 2000 });
      assert.equal(dec.decode(reply.data), "hi");
      sub.unsubscribe();
      const jsm = await jetstreamManager(nc);
      const info = await jsm.getAccountInfo();
      assert.equal(info.streams, 0);
    } finally {
      await ws.close();
      await nc.close();
    }
  } finally {
    await cluster.stop();
  }
  assert.equal(cluster.servers[0]!.running, false);
});

Deno.test("startNatsCluster() starts a 3-server JetStream cluster; kill and restart", async () => {
  await using cluster = await startNatsCluster({ servers: 3, websocket: false });
  assert.equal(cluster.urls.length, 3);
  assert.equal(cluster.wsUrls.length, 0);
  const a = await connect({ servers: cluster.urls[0]! });
  const b = await connect({ servers: cluster.urls[2]! });
  try {
    const got = new Promise<string>((resolve) => {
      a.subscribe("x.>", { callback: (_e, m) => resolve(m.subject), max: 1 });
    });
    await a.flush();
    // interest propagates over routes
    await new Promise((r) => setTimeout(r, 100));
    b.publish("x.y");
    assert.equal(await got, "x.y");
    const jsm = await jetstreamManager(b);
    const si = await jsm.streams.add({ name: "S", subjects: ["s.>"], num_replicas: 3 });
    assert.equal(si.config.num_replicas, 3);
  } finally {
    await a.close();
    await b.close();
  }
  const s = cluster.servers[1]!;
  const pid = s.pid;
  await s.kill();
  assert.equal(s.running, false);
  await s.restart();
  assert.ok(s.running);
  assert.notEqual(s.pid, pid);
});

Deno.test("startNatsCluster() enforces user/pass and token", async () => {
  await using cluster = await startNatsCluster({ user: "u", pass: "p", jetstream: false });
  await assert.rejects(() => connect({ servers: cluster.urls, reconnect: false }));
  const nc = await connect({ servers: cluster.urls, user: "u", pass: "p" });
  await nc.close();
  const ws = await wsconnect({ servers: cluster.wsUrls, user: "u", pass: "p" });
  await ws.close();
  await using tok = await startNatsCluster({ token: "s3cret", jetstream: false, websocket: false });
  const nt = await connect({ servers: tok.urls, token: "s3cret" });
  await nt.close();
});
