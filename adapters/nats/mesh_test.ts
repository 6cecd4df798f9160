import assert from "node:assert/strict";
import { meshConformance } from "../../src/mesh/conformance.ts";
import { MeshError, type MeshConnection } from "../../src/mesh/types.ts";
import { type NatsCluster, startNatsCluster } from "../testing/nats_server.ts";
import { natsMesh } from "./mod.ts";

// Servers shared by the conformance runs: started when this module loads (outside any test,
// so that the sanitizers of each test do not see them) and stopped by the last test below.
// The harness also kills them when the process exits, should that test be filtered out.
const single: NatsCluster = await startNatsCluster({ servers: 1 });
const triple: NatsCluster = await startNatsCluster({ servers: 3, websocket: false });

const noCleanup = () => Promise.resolve();

meshConformance("nats mesh (1 server, TCP)", () =>
  Promise.resolve({
    mesh: natsMesh({ servers: single.urls }),
    cleanup: noCleanup,
  }));

meshConformance("nats mesh (1 server, WebSocket)", () =>
  Promise.resolve({
    mesh: natsMesh({ servers: single.wsUrls }),
    cleanup: noCleanup,
  }));

meshConformance(
  "nats mesh (3 servers, R3 buckets)",
  () =>
    Promise.resolve({
      mesh: natsMesh({ servers: triple.urls, replicas: 3 }),
      cleanup: noCleanup,
    }),
  { concurrentUpdate: false, waitMs: 5000 },
);

Deno.test({
  name: "(stop the shared nats servers)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await single.stop();
    await triple.stop();
  },
});

// keep the imports used while the NATS-specific tests are written
void assert;
void MeshError;
export type { MeshConnection };
