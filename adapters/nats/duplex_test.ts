/** Streams both ways across nodes on a real NATS cluster (TCP and WebSocket). */
import { startNatsCluster, startSystems } from "../testing/mod.ts";
import { duplexCases, Room } from "../../tests/duplex_cases.ts";

Deno.test("streams both ways across nodes on NATS (TCP and WebSocket)", async () => {
  await using cluster = await startNatsCluster({ servers: 1 });
  for (const ws of [false, true]) {
    const systems = await startSystems({
      actors: [Room],
      nodes: 2,
      nats: ws ? { ...cluster, urls: cluster.wsUrls } : cluster,
    });
    try {
      await duplexCases(systems.client, `nats-${ws ? "ws" : "tcp"}-${crypto.randomUUID()}`);
    } finally {
      await systems.close();
    }
  }
});
