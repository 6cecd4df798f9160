/**
 * One node of the cluster example: hosts the bank's actor types, connected to NATS, with the
 * shared libSQL journal. Configured by environment variables; prints `READY` when started and
 * closes gracefully on SIGTERM (its actors move to the other nodes).
 *
 * @module
 */
import { createSystem } from "../../mod.ts";
import { natsMesh } from "../../adapters/nats/mod.ts";
import { Account, Transfer } from "../bank/actors.ts";

const node = Deno.env.get("TROUPE_NODE") ?? "node";
const system = await createSystem({
  actors: [Account, Transfer],
  journal: Deno.env.get("TROUPE_JOURNAL") ?? "file:./data/cluster.db",
  mesh: natsMesh({
    servers: (Deno.env.get("TROUPE_SERVERS") ?? "nats://127.0.0.1:4222").split(","),
    leaseTtl: Number(Deno.env.get("TROUPE_LEASE_TTL") ?? 3000),
  }),
  node,
});
console.log(`READY ${JSON.stringify({ node })}`);
Deno.addSignalListener("SIGTERM", async () => {
  await system.close();
  console.log(`[${node}] closed`);
  Deno.exit(0);
});
