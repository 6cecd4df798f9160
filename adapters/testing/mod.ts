/**
 * Test helpers: a clock the test moves ({@link virtualClock}: reminders, passivation, leases,
 * TTLs and deadlines without waiting), a throw-away NATS cluster (1 or 3 real `nats-server`
 * processes on free loopback ports, with JetStream and WebSocket), several nodes and a client
 * in one process ({@link startSystems}), and node processes to kill ({@link startNodeProcess}).
 *
 * @example
 * ```ts
 * import { startNatsCluster } from "@troupe/troupe/testing";
 * await using cluster = await startNatsCluster({ servers: 3 });
 * console.log(cluster.urls, cluster.wsUrls);
 * ```
 *
 * @module
 */
export { findNatsServer, startNatsCluster } from "./nats_server.ts";
export type { NatsCluster, NatsClusterOptions, ServerHandle } from "./nats_server.ts";
export { startNodeProcess } from "./node_process.ts";
export { startSystems } from "./systems.ts";
export { virtualClock } from "../../spi.ts";
export type { VirtualClock } from "../../spi.ts";
export type { StartSystemsOptions, TestSystems } from "./systems.ts";
export type { NodeProcess, NodeProcessOptions } from "./node_process.ts";
