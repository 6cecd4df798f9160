/**
 * Set-up errors with a real nats-server: a server without JetStream, and a client user of
 * natsAuthConfig() used for a node, each fail createSystem at once with a message that says
 * what to change.
 */
import assert from "node:assert/strict";
import { createSystem } from "../../mod.ts";
import { startNatsCluster } from "../testing/mod.ts";
import { natsAuthConfig, natsMesh, NatsSetupError } from "./mod.ts";

async function setupError(start: () => Promise<unknown>): Promise<[NatsSetupError, number]> {
  const t0 = performance.now();
  try {
    const system = await start();
    await (system as { close(): Promise<void> }).close();
  } catch (err) {
    assert.ok(err instanceof NatsSetupError, `expected NatsSetupError, got ${err}`);
    return [err, performance.now() - t0];
  }
  assert.fail("expected createSystem to fail");
}

Deno.test("natsMesh: a server without JetStream fails createSystem at once, saying how to enable it", async () => {
  await using nats = await startNatsCluster({ jetstream: false, websocket: false });
  const [err, ms] = await setupError(() =>
    createSystem({ mesh: natsMesh({ servers: nats.urls[0]! }), node: "n1", logger: "silent" })
  );
  assert.equal(err.reason, "jetstream_missing");
  assert.match(err.message, /Node "n1" cannot use JetStream/);
  assert.match(err.message, /nats-server -js/);
  assert.match(err.message, /jetstream \{ store_dir/);
  assert.ok(ms < 10_000, `took ${Math.round(ms)} ms`); // the KV retries alone took 30 s
});

Deno.test("natsMesh: a client user of natsAuthConfig() used for a node is refused, naming the role", async () => {
  const config = natsAuthConfig({
    nodes: [{ user: "node", pass: "node-pw" }],
    clients: [{ user: "gw", pass: "gw-pw" }],
  });
  await using nats = await startNatsCluster({ config, websocket: false });
  // with the node inbox (its subscription is refused) and with the client's own (JetStream is)
  for (const inbox of [{}, { inboxPrefix: "_INBOX_gw" }]) {
    const [err, ms] = await setupError(() =>
      createSystem({
        mesh: natsMesh({ servers: nats.urls[0]!, user: "gw", pass: "gw-pw", ...inbox }),
        node: "n1",
        logger: "silent",
      })
    );
    assert.equal(err.reason, "not_a_node_user");
    assert.match(err.message, /Node "n1" \(NATS user "gw"\) may not (publish|subscribe) to/);
    assert.match(err.message, /natsAuthConfig\(\{ nodes \}\)/);
    assert.ok(ms < 5_000, `took ${Math.round(ms)} ms`);
  }
  // the node user works
  const system = await createSystem({
    mesh: natsMesh({ servers: nats.urls[0]!, user: "node", pass: "node-pw" }),
    logger: "silent",
  });
  await system.close();
});
