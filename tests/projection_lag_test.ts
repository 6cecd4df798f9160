/**
 * Projection lag: how far behind the journal a projection is, in ms (`Projection.lag`), in
 * `system.cluster.stats()` (and so the dashboard's `/api/stats` and its Projections table),
 * and as the `troupe.projection.lag` OpenTelemetry gauge (seconds) of the node that runs it.
 */
import assert from "node:assert/strict";
import { createSystem } from "../mod.ts";
import { dashboard } from "../adapters/hono/mod.ts";
import { startNodeProcess } from "../adapters/testing/mod.ts";
import { Account } from "../examples/bank/actors.ts";
import { eventually, otelEnv, startReceiver } from "./otel_fixtures.ts";
import { waitFor } from "./helpers.ts";

Deno.test("projection lag: grows while a handler is stuck behind committed events, 0 once caught up; in the cluster stats and the dashboard's", async () => {
  const system = await createSystem({ actors: [Account], node: "n1", logger: "silent" });
  try {
    for (let i = 1; i <= 5; i++) {
      await system.ref(Account, `a${i % 2}`).ask("deposit", { amount: i });
    }
    let open = () => {};
    const gate = new Promise<void>((r) => open = r);
    const handled: number[] = [];
    const p = system.projection("view", {
      from: [Account],
      pollMs: 20,
      async handle(e) {
        await gate;
        handled.push((e.payload as { amount: number }).amount);
      },
    });
    try {
      // Stuck on the first event: its lag is the time since that event was committed.
      await waitFor(() => p.running && p.lag >= 100, 5_000, "a lag of 100 ms or more");
      const stats = await system.cluster.stats();
      const [report] = stats.nodes.find((n) => n.id === "n1")!.projections;
      assert.equal(report!.name, "view");
      assert.equal(report!.running, true);
      assert.ok(report!.lag >= 100, `lag in the stats: ${report!.lag}`);
      assert.equal(report!.position, undefined, "nothing handled yet");
      const app = dashboard(system, { access: "public" });
      const body = await (await app.request("/api/stats")).json();
      assert.equal(body.nodes[0].projections[0].name, "view");
      assert.ok(body.nodes[0].projections[0].lag >= 100);
      assert.match(await (await app.request("/")).text(), /id="projections"/);

      // Released: it handles every event, then finds nothing new: lag 0.
      open();
      await waitFor(() => handled.length === 5 && p.lag === 0, 5_000, "caught up");
      assert.deepEqual(handled, [1, 2, 3, 4, 5]);
      let head: string | undefined;
      for await (const e of system.feed(Account, { live: false })) head = e.position;
      assert.equal(p.position, head);
      const after = (await system.cluster.stats()).nodes[0]!.projections[0]!;
      assert.equal(after.lag, 0);
      assert.equal(after.position, head);
      // A new event: handled, and 0 again.
      await system.ref(Account, "a1").ask("deposit", { amount: 6 });
      await waitFor(() => handled.length === 6 && p.lag === 0, 5_000, "the new event");
    } finally {
      await p.stop();
    }
    // Stopped: no longer reported.
    assert.deepEqual((await system.cluster.stats()).nodes[0]!.projections, []);
  } finally {
    await system.close();
  }
});

Deno.test("projection lag: the troupe.projection.lag gauge (s) of the node running it", async () => {
  await using receiver = startReceiver();
  await using _node = await startNodeProcess({
    script: new URL("./nodes/projection_lag_node.ts", import.meta.url),
    env: otelEnv(receiver, "lag"),
  });
  const point = (name: string, ok: (v: number) => boolean) =>
    receiver.points.findLast((p) =>
      p.service === "lag" && p.name === "troupe.projection.lag" &&
      p.attributes["troupe.projection"] === name && p.attributes["troupe.node"] === "lag-1" &&
      ok(p.value!)
    );
  const stuck = await eventually(() => point("stuck", (v) => v >= 0.2), 10_000, "stuck's lag");
  assert.equal(stuck.unit, "s");
  await eventually(() => point("done", (v) => v === 0), 10_000, "done's lag of 0");
});
