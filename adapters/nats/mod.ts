/**
 * Troupe on NATS: {@link natsMesh} connects the nodes of a Troupe cluster through a NATS
 * server or cluster (core NATS for routing and pub/sub, JetStream KV for membership,
 * ownership and leases). `nats://` / `host:port` URLs use TCP, `ws://` / `wss://` use
 * WebSocket (for edge runtimes without raw TCP).
 *
 * @example
 * ```ts
 * import { createSystem } from "@troupe/troupe";
 * import { natsMesh } from "@troupe/troupe/nats";
 *
 * const system = await createSystem({
 *   actors: [],
 *   mesh: natsMesh({ servers: ["nats://127.0.0.1:4222"] }),
 * });
 * await system.close();
 * ```
 *
 * @module
 */

export { NatsAuthError, natsMesh } from "./mesh.ts";
export type { NatsDurableTopicsOptions, NatsMeshOptions, TlsOptions } from "./options.ts";
export { replicatedCasIsSafe } from "./kv.ts";
export {
  NATS_SERVICE_REPLY_PREFIX,
  natsAuthConfig,
  type NatsAuthConfigOptions,
  type NatsClientUser,
  type NatsNodeUser,
} from "./auth.ts";
export { NatsSetupError, type NatsSetupReason } from "./setup.ts";
