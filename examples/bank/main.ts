/**
 * The bank demo: accounts as event-sourced actors in a libSQL file, transfers through a
 * transfer actor (idempotent), and an audit printout from `history()`. Run: `npm run demo`.
 *
 * @module
 */
import { createSystem } from "../../mod.ts";
import { Account, Transfer } from "./actors.ts";

const dir = new URL("../../data/", import.meta.url);
await Deno.mkdir(dir, { recursive: true });
const db = new URL("bank.db", dir).pathname;
const run = crypto.randomUUID().slice(0, 8);

const system = await createSystem({ actors: [Account, Transfer], journal: `file:${db}` });
console.log(`Troupe bank demo — node ${system.node}, journal file:${db}`);

const alice = system.ref(Account, `alice-${run}`);
const bob = system.ref(Account, `bob-${run}`);
console.log(`deposit 100 to ${alice.id} →`, await alice.ask("deposit", { amount: 100 }));
console.log(`deposit 20 to ${bob.id} →`, await bob.ask("deposit", { amount: 20 }));

const t1 = system.ref(Transfer, `t1-${run}`);
const move = { from: alice.id, to: bob.id, amount: 30 };
console.log("transfer 30 alice → bob:", (await t1.ask("run", move)).status);
console.log("same transfer retried:", (await t1.ask("run", move)).status, "(applied once)");
const t2 = system.ref(Transfer, `t2-${run}`);
const tooMuch = { from: bob.id, to: alice.id, amount: 500 };
console.log("transfer 500 bob → alice:", (await t2.ask("run", tooMuch)).status);

console.log("balances:", { alice: await alice.ask("balance"), bob: await bob.ask("balance") });
try {
  await bob.ask("withdraw", { amount: 1000 });
} catch (err) {
  console.log("withdraw 1000 from bob →", `${(err as Error).name}: ${(err as Error).message}`);
}

console.log("\naudit of", alice.id);
for await (const e of system.history(Account, alice.id)) {
  console.log(`  #${e.seq} ${e.at.toISOString()} ${e.type}`, e.payload);
}
console.log("audit of", bob.id);
for await (const e of system.history(Account, bob.id)) {
  console.log(`  #${e.seq} ${e.at.toISOString()} ${e.type}`, e.payload);
}

await system.close();
console.log("\ndone: state is in", db);
