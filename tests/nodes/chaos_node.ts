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
import { Account } from "../../examples/bank/actors.ts";
import { Register } from "./register.ts";
import { startNode } from "./_node.ts";

await startNode("chaos", [Account, Register], { traceEmpty: false });
