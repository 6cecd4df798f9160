/**
 * NATS service discovery: every node answers the micro protocol (`$SRV.PING|INFO|STATS`) as
 * service `troupe`, found with NATS's own services client (`@nats-io/services`) on a real
 * nats-server.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { Svcm } from "@nats-io/services";
import { createSystem } from "../mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { Account, Counter, Resize } from "./fixtures.ts";

/** Collects every answer of one query (the client stops after a short quiet spell). */
async function all<T>(responses: Promise<AsyncIterable<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const r of await responses) out.push(r);
  return out;
}

Deno.test("nats micro: every node answers as service troupe, one endpoint per hosted type with its counts", async () => {
  await using nats = await startNatsCluster();
  const mesh = () => natsMesh({ servers: nats.urls[0]!, prefix: "micro", leaseTtl: 2000 });
  await using m1 = await createSystem({ node: "m1", actors: [Account], mesh: mesh() });
  await using m2 = await createSystem({ node: "m2", actors: [Counter, Resize], mesh: mesh() });
  // A node may stay out of service discovery (a client node answers it too, by default).
  await using _m3 = await createSystem({ node: "m3", mesh: mesh(), serviceDiscovery: false });
  await m1.ref(Account, "a").ask("deposit", 1);
  await m1.ref(Account, "b").ask("deposit", 2);
  await assert.rejects(m2.ref(Account, "a").ask("withdraw", 10), { code: "insufficient" });
  await m2.ref(Counter, "c").ask("inc", 1);

  const nc = await connect({ servers: nats.urls[0]! });
  try {
    // deno-lint-ignore no-explicit-any
    const svc = new Svcm(nc as any).client({ strategy: "stall", maxWait: 5_000 });
    const pings = await all(svc.ping("troupe"));
    assert.deepEqual(pings.map((p) => p.id).sort(), ["m1", "m2"]);
    for (const p of pings) {
      assert.equal(p.name, "troupe");
      assert.match(p.version, /^\d+\.\d+\.\d+/);
      assert.equal(p.metadata?.["troupe.node"], p.id);
      assert.equal(p.metadata?.["troupe.prefix"], "micro");
    }
    // `$SRV.PING` (every service) finds them too.
    assert.deepEqual((await all(svc.ping())).map((p) => p.id).sort(), ["m1", "m2"]);

    const infos = await all(svc.info("troupe"));
    const endpoints = Object.fromEntries(
      infos.map((i) => [i.id, i.endpoints.map((e) => e.name).sort()]),
    );
    assert.deepEqual(endpoints, { m1: ["account"], m2: ["counter", "resize"] });
    const resize = infos.find((i) => i.id === "m2")!.endpoints.find((e) => e.name === "resize")!;
    assert.equal(resize.subject, "micro.w.resize");
    assert.equal(resize.queue_group, "w-resize");

    const [stats] = await all(svc.stats("troupe", "m1"));
    assert.equal(stats!.id, "m1");
    assert.ok(!Number.isNaN(Date.parse(stats!.started)));
    const account = stats!.endpoints!.find((e) => e.name === "account")!;
    assert.equal(account.num_requests, 3);
    assert.equal(account.num_errors, 1);
    assert.equal(account.last_error, "insufficient: insufficient funds");
    assert.ok(account.processing_time > 0);
    assert.deepEqual(account.data, { activations: 2, queued: 0 });
    const m2stats = await all(svc.stats("troupe", "m2"));
    assert.deepEqual(m2stats.map((s) => s.id), ["m2"]);
    const counter = m2stats[0]!.endpoints!.find((e) => e.name === "counter")!;
    assert.equal(counter.num_requests, 1);
  } finally {
    await nc.close();
  }
});
