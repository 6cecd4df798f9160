/**
 * A node process of tests/events_nats_test.ts: runs projection `balances` over the bank
 * example's `Account` events on a NATS mesh, with a libSQL journal shared with the test
 * process; its handler writes each event to the store `balances-view` under
 * `<id>:<seq>` and prints `HANDLED <id>:<seq>`. On its `PROJECTION_HANG_AT`-th event it writes
 * the event, prints `HANG <id>:<seq>` and never returns (so that event's checkpoint is never
 * written): the test kills it with kill -9 there.
 *
 * Environment: those of `_node.ts` (`TROUPE_SERVERS`, `TROUPE_JOURNAL`, `TROUPE_NODE`,
 * `TROUPE_PREFIX`, `TROUPE_LEASE_TTL`) and `PROJECTION_HANG_AT` (@default {0}: never).
 * Hosts no actor type. Prints `READY {"node": id, "pid": n}` once started.
 */
import { createSystem } from "../../mod.ts";
import { natsMesh } from "../../adapters/nats/mod.ts";
import { libsqlJournal } from "../../adapters/libsql/mod.ts";
import { Account } from "../../examples/bank/actors.ts";
import { nodeEnv } from "./_node.ts";

const e = nodeEnv("projection");
const hangAt = Number(e.env("PROJECTION_HANG_AT") ?? 0);
const system = await createSystem({
  actors: [],
  journal: libsqlJournal({ url: e.journalUrl }),
  mesh: natsMesh({ servers: e.servers, prefix: e.prefix, leaseTtl: e.leaseTtl }),
  node: e.node,
  logger: "warn",
});
const store = system.store<number>("balances-view");
let handled = 0;
system.projection("balances", {
  from: [Account],
  pollMs: 20,
  async handle(ev) {
    const key = `${ev.id}:${ev.seq}`;
    await store.set(key, (ev.payload as { amount: number }).amount);
    if (++handled === hangAt) {
      console.log(`HANG ${key}`);
      return await new Promise<never>(() => {});
    }
    console.log(`HANDLED ${key}`);
  },
});
// No graceful close: the test ends this process with kill -9.
console.log(`READY ${JSON.stringify({ node: e.node, pid: Deno.pid })}`);
