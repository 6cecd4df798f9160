/**
 * The bank example as a cluster: a local 3-server NATS cluster, three node processes (one on
 * each server) sharing one libSQL file, and this process as a client node (`actors: []`).
 * It moves money around, shows where each actor runs, stops one node to show its actors
 * moving, prints an audit, and stops everything. Run: `deno task cluster`.
 *
 * @module
 */
import { createSystem } from "../../mod.ts";
import { natsMesh } from "../../adapters/nats/mod.ts";
import { startNatsCluster, startNodeProcess } from "../../adapters/testing/mod.ts";
import { Account, Transfer } from "../bank/actors.ts";

const dir = new URL("../../data/", import.meta.url);
await Deno.mkdir(dir, { recursive: true });
const journal = `file:${new URL("cluster.db", dir).pathname}`;
const run = crypto.randomUUID().slice(0, 6);

console.log("starting a 3-server NATS cluster on loopback…");
await using nats = await startNatsCluster({ servers: 3 });
console.log("  servers:", nats.urls.join(" "));

const nodes = await Promise.all([0, 1, 2].map((i) =>
  startNodeProcess({
    script: new URL("./node.ts", import.meta.url),
    env: {
      TROUPE_NODE: `bank-${i + 1}`,
      TROUPE_SERVERS: nats.urls[i]!,
      TROUPE_JOURNAL: journal,
      TROUPE_LEASE_TTL: "3000",
    },
  })
));
console.log("nodes:", nodes.map((n) => n.info.node).join(", "));

const client = await createSystem({ mesh: natsMesh({ servers: nats.urls }), journal });
try {
  const ids = ["alice", "bob", "carol", "dave"].map((n) => `${n}-${run}`);
  for (const id of ids) await client.ref(Account, id).ask("deposit", { amount: 100 });
  for (let i = 0; i < ids.length; i++) {
    const t = client.ref(Transfer, `t${i}-${run}`);
    const move = { from: ids[i]!, to: ids[(i + 1) % ids.length]!, amount: 10 * (i + 1) };
    const r = await t.ask("run", move);
    console.log(`transfer ${move.amount} ${move.from} → ${move.to}: ${r.status}`);
  }
  const where = async () => {
    for (const id of ids) {
      const balance = await client.ref(Account, id).ask("balance"); // activates it if needed
      const node = await client.directory.locate(Account, id);
      console.log(`  ${id.padEnd(14)} balance ${String(balance).padStart(4)}  on ${node}`);
    }
  };
  console.log("accounts:");
  await where();

  const host = await client.directory.locate(Account, ids[0]!);
  const victim = nodes.find((n) => n.info.node === host) ?? nodes[0]!;
  console.log(`\nstopping ${victim.info.node} (graceful close: its actors move at once)…`);
  await victim.stop();
  console.log("accounts:");
  await where();

  console.log(`\naudit of ${ids[0]}:`);
  for await (const e of client.history(Account, ids[0]!)) {
    console.log(`  #${e.seq} ${e.type}`, e.payload);
  }
} finally {
  await client.close();
  await Promise.all(nodes.map((n) => n.stop()));
}
console.log("\nstopped the nodes and the NATS cluster");
