/**
 * Durable topics on NATS (JetStream): the conformance suite on one server and on a
 * three-server cluster (R3 stream), and what only a real server shows: a server without
 * JetStream is a clear error, the stream is made once with the configured limits.
 */
import assert from "node:assert/strict";
import { durableTopicsConformance } from "../../spi.ts";
import { type NatsCluster, startNatsCluster } from "../testing/mod.ts";
import { natsMesh, NatsSetupError } from "./mod.ts";
import { createSystem } from "../../mod.ts";

// Servers shared by the conformance runs: started when this module loads (outside any test,
// so that each test's sanitizers do not see them), stopped by the last test below.
const single: NatsCluster = await startNatsCluster({ servers: 1, websocket: false });
const triple: NatsCluster = await startNatsCluster({ servers: 3, websocket: false });

durableTopicsConformance(
  "nats mesh (1 server)",
  () =>
    Promise.resolve({ mesh: natsMesh({ servers: single.urls }), cleanup: () => Promise.resolve() }),
);

durableTopicsConformance(
  "nats mesh (3 servers, R3 stream)",
  () =>
    Promise.resolve({
      // both nodes on one server (see mesh_test.ts); the stream and consumers are R3
      mesh: natsMesh({ servers: triple.urls[0]!, prefix: "r3", durableTopics: { replicas: 3 } }),
      cleanup: () => Promise.resolve(),
    }),
  { waitMs: 10_000 },
);

Deno.test("natsMesh durable topics: a durable publish to a server without JetStream is a clear error", async () => {
  await using nats = await startNatsCluster({ jetstream: false, websocket: false });
  const conn = await natsMesh({ servers: nats.urls[0]! }).connect({ node: "n1" });
  try {
    const t0 = performance.now();
    await assert.rejects(
      conn.durableTopics!().publish("troupe.d.orders", new Uint8Array([1])),
      (err) => {
        assert.ok(err instanceof NatsSetupError, `got ${err}`);
        assert.equal(err.reason, "jetstream_missing");
        assert.match(err.message, /nats-server -js/);
        return true;
      },
    );
    assert.ok(performance.now() - t0 < 10_000);
  } finally {
    await conn.close();
  }
});

Deno.test("natsMesh durable topics: the stream is made once with the configured limits", async () => {
  const prefix = `lim${crypto.randomUUID().slice(0, 6)}`;
  const mesh = natsMesh({
    servers: single.urls,
    prefix,
    durableTopics: { maxAge: 3_600_000, maxBytes: 1 << 20, duplicateWindow: 30_000 },
  });
  const [a, b] = [await mesh.connect({ node: "a" }), await mesh.connect({ node: "b" })];
  try {
    await Promise.all([
      a.durableTopics!().publish(`${prefix}.d.x`, new Uint8Array([1])),
      b.durableTopics!().publish(`${prefix}.d.x`, new Uint8Array([2])),
    ]);
    const { jetstreamManager } = await import("@nats-io/jetstream");
    const { connect } = await import("@nats-io/transport-node");
    const nc = await connect({ servers: single.urls[0]! });
    try {
      const si = await (await jetstreamManager(nc)).streams.info(`${prefix}_topics`);
      assert.deepEqual(si.config.subjects, [`${prefix}.d.>`]);
      assert.equal(si.config.max_age, 3_600_000 * 1e6);
      assert.equal(si.config.max_bytes, 1 << 20);
      assert.equal(si.config.duplicate_window, 30_000 * 1e6);
      assert.equal(si.state.messages, 2);
    } finally {
      await nc.close();
    }
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("natsMesh durable topics: a stream the server has no room for is a clear error, at once", async () => {
  const prefix = `big${crypto.randomUUID().slice(0, 6)}`;
  // the test servers' max_file_store is 1 GiB
  const mesh = natsMesh({
    servers: single.urls,
    prefix,
    durableTopics: { maxBytes: 4 * 1024 ** 3 },
  });
  const conn = await mesh.connect({ node: "a" });
  try {
    const t0 = performance.now();
    await assert.rejects(
      conn.durableTopics!().publish(`${prefix}.d.x`, new Uint8Array()),
      (err) => {
        assert.ok(err instanceof NatsSetupError, `got ${err}`);
        assert.equal(err.reason, "jetstream_no_room");
        assert.match(err.message, /durableTopics\.maxBytes/);
        return true;
      },
    );
    assert.ok(performance.now() - t0 < 5_000, "not retried");
  } finally {
    await conn.close();
  }
});

Deno.test("natsMesh durable topics: bad stream options are refused at once", () => {
  assert.throws(() => natsMesh({ servers: "x:1", durableTopics: { maxAge: 0 } }), RangeError);
  assert.throws(() => natsMesh({ servers: "x:1", durableTopics: { replicas: 7 } }), RangeError);
});

Deno.test({
  name:
    "durable pub/sub on 3 servers: the stream leader's server is killed, nothing stored is lost",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    await using cluster = await startNatsCluster({ servers: 3, websocket: false });
    const mesh = natsMesh({
      servers: cluster.urls,
      prefix: "kill",
      kvRetry: 20_000, // publishes wait through the election instead of failing
      durableTopics: { replicas: 3 },
    });
    const publisher = await createSystem({ mesh, logger: "error", node: "pub" });
    const subscriber = await createSystem({ mesh, logger: "error", node: "sub" });
    try {
      const seen = new Map<number, number>();
      const sub = subscriber.subscribe("orders.*", (n) => {
        seen.set(n as number, (seen.get(n as number) ?? 0) + 1);
      }, { durable: "survivor", from: "all", ackWait: 2_000 });
      await sub.ready;
      for (let i = 0; i < 20; i++) {
        await publisher.publish("orders.created", i, { durable: true, id: `o-${i}` });
      }
      await waitUntil(() => seen.size === 20, 10_000, "the first 20");
      const leader = await streamLeader(cluster, "kill_topics");
      const victim = cluster.servers.find((s) => s.name === leader);
      assert.ok(victim, `the stream's leader: ${leader}`);
      await victim.kill("SIGKILL");
      const t0 = performance.now();
      for (let i = 20; i < 40; i++) {
        await publisher.publish("orders.created", i, { durable: true, id: `o-${i}` });
      }
      const published = performance.now() - t0;
      await waitUntil(() => seen.size === 40, 30_000, "all 40 after the kill");
      const twice = [...seen.values()].filter((n) => n > 1).length;
      console.log(
        `[kill] 20 durable publishes after the leader died took ${Math.round(published)} ms; ` +
          `${twice} of 40 messages delivered more than once`,
      );
    } finally {
      await subscriber.close();
      await publisher.close();
    }
  },
});

/** Polls `ok` every 20 ms until it holds; throws after `ms`. */
async function waitUntil(ok: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The server name of the leader of JetStream stream `name`, from the monitoring port. */
async function streamLeader(cluster: NatsCluster, name: string): Promise<string | undefined> {
  for (const server of cluster.servers) {
    const res = await fetch(`${server.monitorUrl}/jsz?streams=true`);
    const body = await res.json() as {
      account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[];
    };
    for (const account of body.account_details ?? []) {
      for (const st of account.stream_detail ?? []) {
        if (st.name === name && st.cluster?.leader) return st.cluster.leader;
      }
    }
  }
  return undefined;
}

Deno.test("durable_test: stop the shared servers", async () => {
  await single.stop();
  await triple.stop();
});
