/**
 * The cluster behaviour suite (tests/cluster_suite.ts) on real NATS: several nodes in this
 * process, each with its own NATS connection, on a 3-server cluster with R3 buckets, over TCP
 * and over WebSocket.
 */
import { natsMesh } from "./mod.ts";
import { startNatsCluster } from "../testing/mod.ts";
import { clusterSteps } from "../../tests/cluster_suite.ts";

Deno.test("cluster behaviour on a 3-server NATS cluster (TCP)", async (t) => {
  await using cluster = await startNatsCluster({ servers: 3 });
  await clusterSteps(t, () => {
    const prefix = `t${crypto.randomUUID().slice(0, 8)}`;
    let i = 0;
    return Promise.resolve({
      // spread the nodes over the servers
      mesh: () => natsMesh({ servers: cluster.urls[i++ % 3]!, prefix, leaseTtl: 2000 }),
      cleanup: () => Promise.resolve(),
    });
  });
});

Deno.test("cluster behaviour on NATS over WebSocket", async (t) => {
  await using cluster = await startNatsCluster({ servers: 1 });
  await clusterSteps(t, () => {
    const prefix = `w${crypto.randomUUID().slice(0, 8)}`;
    return Promise.resolve({
      mesh: () => natsMesh({ servers: cluster.wsUrls[0]!, prefix, leaseTtl: 2000 }),
      cleanup: () => Promise.resolve(),
    });
  });
});
