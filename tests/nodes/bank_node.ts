/**
 * A bank node as its own process, for multi-process tests (adapters/nats/failover_test.ts):
 * hosts the bank example's `Account` and `Transfer` on a NATS mesh, with a libSQL journal
 * shared with the other processes.
 *
 * Environment:
 * - `TROUPE_SERVERS`: NATS URLs, comma-separated (required);
 * - `TROUPE_JOURNAL`: libSQL URL of the shared journal (required);
 * - `TROUPE_NODE`: node id; `TROUPE_PREFIX`: mesh prefix; `TROUPE_LEASE_TTL`: lease TTL in ms;
 * - `TROUPE_LEASE`: a lease name to acquire and hold (prints `LEASE {"token": n}`);
 * - `TROUPE_TRACE=1`: prints `APPEND {json}` after every successful journal append
 *   (`node`, `actor`, `epoch`, `first`, `n`) and `APPEND_FAILED {json}` after a refused one.
 *
 * Also hosts the stateless `Slowpoke` worker (prints `WORK {"node"}` when a message starts).
 *
 * Prints `READY {"node": id, "pid": n}` once started; closes gracefully on SIGTERM and
 * exits 0.
 */
import { Account, Transfer } from "../../examples/bank/actors.ts";
import { Slowpoke } from "./slowpoke.ts";
import { startNode } from "./_node.ts";

const { system, env } = await startNode("bank", [Account, Transfer, Slowpoke]);
const leaseName = env.env("TROUPE_LEASE");
const leaseTtl = env.leaseTtl;

if (leaseName) {
  const lease = await system.lease(leaseName, { ttl: leaseTtl });
  console.log(`LEASE ${JSON.stringify({ name: leaseName, token: lease.token })}`);
  lease.signal.addEventListener("abort", () => console.log(`LEASE_LOST ${leaseName}`));
}
