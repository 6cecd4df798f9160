/**
 * A node of the chaos tests (tests/chaos/) as its own process: hosts the bank example's
 * `Account` and the test `Register` on a NATS mesh, with a libSQL journal shared with the
 * other processes.
 *
 * Environment (as tests/nodes/bank_node.ts):
 * - `TROUPE_SERVERS`: NATS URLs, comma-separated (required);
 * - `TROUPE_JOURNAL`: libSQL URL of the shared journal (required);
 * - `TROUPE_NODE`: node id; `TROUPE_PREFIX`: mesh prefix; `TROUPE_LEASE_TTL`: lease TTL in ms;
 * - `TROUPE_TRACE=1`: prints `APPEND {json}` after every successful journal append
 *   (`node`, `actor`, `epoch`, `first`, `n`) and `APPEND_FAILED {json}` after a refused one.
 *
 * Prints `READY {"node": id, "pid": n}` once started; closes gracefully on SIGTERM and
 * exits 0.
 */
import { createSystem, type Journal } from "../../mod.ts";
import { natsMesh } from "../../adapters/nats/mod.ts";
import { libsqlJournal } from "../../adapters/libsql/mod.ts";
import { Account } from "../../examples/bank/actors.ts";
import { Register } from "./register.ts";

const env = (name: string): string | undefined => Deno.env.get(name) || undefined;
const servers = (env("TROUPE_SERVERS") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
const journalUrl = env("TROUPE_JOURNAL");
if (servers.length === 0 || !journalUrl) {
  console.error("chaos_node: TROUPE_SERVERS and TROUPE_JOURNAL are required");
  Deno.exit(2);
}
const node = env("TROUPE_NODE") ?? `chaos-${crypto.randomUUID().slice(0, 8)}`;
const prefix = env("TROUPE_PREFIX") ?? "troupe";
const leaseTtl = Number(env("TROUPE_LEASE_TTL") ?? 5000);
const trace = env("TROUPE_TRACE") === "1";

const base = libsqlJournal({ url: journalUrl });
const journal: Journal = !trace ? base : {
  activate: (actor) => base.activate(actor),
  async append(a) {
    const what = {
      node,
      actor: a.actor,
      epoch: a.epoch,
      first: a.expectedSeq + 1,
      n: a.events.length,
    };
    try {
      await base.append(a);
    } catch (err) {
      console.log(`APPEND_FAILED ${JSON.stringify({ ...what, error: String(err) })}`);
      throw err;
    }
    if (what.n > 0) console.log(`APPEND ${JSON.stringify(what)}`);
  },
  read: (actor, from, limit) => base.read(actor, from, limit),
  reply: (actor, key) => base.reply(actor, key),
  dueReminders: (now, limit) => base.dueReminders(now, limit),
  nextReminder: () => base.nextReminder(),
  deleteReminder: (id) => base.deleteReminder(id),
  close: () => base.close(),
};

const system = await createSystem({
  actors: [Account, Register],
  journal,
  mesh: natsMesh({ servers, prefix, leaseTtl }),
  node,
  logger: "warn",
});

let closing: Promise<void> | undefined;
const shutdown = () =>
  closing ??= (async () => {
    let code = 0;
    try {
      await system.close();
      await base.close();
    } catch (err) {
      console.error("chaos_node: close failed", err);
      code = 1;
    }
    console.log("CLOSED");
    Deno.exit(code);
  })();
Deno.addSignalListener("SIGTERM", shutdown);
Deno.addSignalListener("SIGINT", shutdown);

console.log(`READY ${JSON.stringify({ node, pid: Deno.pid })}`);
