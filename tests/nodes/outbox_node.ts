/**
 * A node process of the outbox crash test (tests/outbox_crash_test.ts): hosts `Orders`
 * (outbox_orders.ts) on a NATS mesh, with a libSQL journal shared with the test process.
 *
 * Environment: those of `_node.ts` (`TROUPE_SERVERS`, `TROUPE_JOURNAL`, `TROUPE_NODE`,
 * `TROUPE_PREFIX`, `TROUPE_LEASE_TTL`), and `OUTBOX_HOLD_MS`: each durable publish of this node
 * waits that long before it stores the message in JetStream, and as long again before it
 * reports it stored (so the outbox deletes it only then). A stand-in for a slow link to
 * JetStream: when the test kills the node, the messages of its last turns are still in its
 * outbox, some of them not yet published and some published but not yet deleted, which is
 * what the sweep of another node must then forward, once. @default {0}
 *
 * Prints `READY {"node": id, "pid": n}` once started.
 */
import { createSystem } from "../../mod.ts";
import { natsMesh } from "../../adapters/nats/mod.ts";
import { libsqlJournal } from "../../adapters/libsql/mod.ts";
import { nodeEnv } from "./_node.ts";
import { Orders } from "./outbox_orders.ts";
import { withDurablePublish } from "../_durable_publish.ts";

const e = nodeEnv("outbox");
const hold = Number(e.env("OUTBOX_HOLD_MS") ?? 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const mesh = natsMesh({ servers: e.servers, prefix: e.prefix, leaseTtl: e.leaseTtl });
await createSystem({
  actors: [Orders],
  journal: libsqlJournal({ url: e.journalUrl }),
  mesh: hold > 0
    ? withDurablePublish(mesh, (publish) => async (...args) => {
      // held before and after storing, so that a kill finds messages in both states
      await sleep(hold);
      const receipt = await publish(...args);
      await sleep(hold);
      return receipt;
    })
    : mesh,
  node: e.node,
  logger: "warn",
});
// No graceful close: the test ends this process with kill -9.
console.log(`READY ${JSON.stringify({ node: e.node, pid: Deno.pid })}`);
