import assert from "node:assert/strict";
import { ActorError, defineActor } from "../../mod.ts";
import { startNatsCluster, startSystems } from "./mod.ts";

const Counter = defineActor({
  name: "counter",
  initialState: () => ({ n: 0 }),
  events: { added: (s, e: { by: number }) => ({ n: s.n + e.by }) },
  handlers: {
    add(ctx, by: number) {
      ctx.emit("added", { by });
      return ctx.state.n;
    },
    where: (ctx) => ctx.node,
  },
});

Deno.test("startSystems() on the in-process mesh: nodes see each other, actors spread, close() ends all", async () => {
  const cluster = await startSystems({ actors: [Counter] });
  const { nodes, client } = cluster;
  try {
    assert.deepEqual(nodes.map((n) => n.node), ["node-0", "node-1", "node-2"]);
    assert.equal(client.node, "client");
    for (const s of [...nodes, client]) {
      const ids = s.directory.nodes().map((n) => n.id);
      for (const n of nodes) assert.ok(ids.includes(n.node), `${s.node} sees ${n.node}`);
    }
    const hosts = new Set<string>();
    for (let i = 0; i < 30; i++) {
      assert.equal(await client.ref(Counter, `c${i}`).ask("add", 2), 2);
      hosts.add(await client.ref(Counter, `c${i}`).ask("where"));
    }
    assert.ok(hosts.size >= 2, `spread over ${[...hosts]}`);
    assert.ok(!hosts.has("client"), "the client hosts nothing");
    // the journal is shared: a node reads what another wrote
    const events = [];
    for await (const e of nodes[2]!.history(Counter, "c0")) events.push(e.payload);
    assert.deepEqual(events, [{ by: 2 }]);
  } finally {
    await cluster.close();
  }
  await assert.rejects(
    client.ref(Counter, "c0").ask("add", 1),
    (err) => err instanceof ActorError && err.code === "closed",
  );
  await cluster.close(); // idempotent
});

Deno.test("startSystems() rejects a bad node count", async () => {
  await assert.rejects(startSystems({ actors: [Counter], nodes: 0 }), RangeError);
});

Deno.test("startSystems() on a 3-server NATS cluster: each node on its own server, hand-over on close", async () => {
  await using nats = await startNatsCluster({ servers: 3, websocket: false });
  await using cluster = await startSystems({ actors: [Counter], nats, leaseTtl: 3000 });
  const ref = cluster.client.ref(Counter, "x");
  assert.equal(await ref.ask("add", 5), 5);
  const host = await ref.ask("where");
  const owner = cluster.nodes.find((n) => n.node === host)!;
  await owner.close();
  assert.equal(await ref.ask("add", 1, { timeout: 10_000 }), 6);
  assert.notEqual(await ref.ask("where"), host);
  // a second set on the same NATS cluster is isolated from the first (its own prefix)
  await using other = await startSystems({ actors: [Counter], nats, nodes: 1 });
  assert.deepEqual(other.client.directory.nodes().map((n) => n.id).sort(), ["client", "node-0"]);
  assert.equal(await other.client.ref(Counter, "x").ask("add", 1), 1);
});
