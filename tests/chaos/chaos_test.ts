/**
 * The chaos test, short form: 5 fault cycles against 3 node processes on a 3-server NATS
 * cluster under a steady load, then the invariants are checked (see ./chaos.ts). Each test
 * runs a fixed seed, so that CI replays the same fault schedule every time (a failure is then
 * a change, not the dice); `CHAOS_SEED=<n>` runs another, `CHAOS_CYCLES=<n>` changes the
 * number of cycles, `CHAOS_KINDS=kill9-node,sigstop-node` the kinds of fault. The long form,
 * with a fresh random seed each run, is `deno run -A bench/chaos.ts`.
 */
import assert from "node:assert/strict";
import { type FaultKind, runChaos, summarize, violations } from "./chaos.ts";

/** The seed of a test: `CHAOS_SEED` if set, else its fixed one. */
function seedOf(fixed: number): number {
  const seed = Number(Deno.env.get("CHAOS_SEED") ?? fixed);
  if (!Number.isInteger(seed)) throw new TypeError(`CHAOS_SEED must be an integer, got ${seed}`);
  return seed;
}

Deno.test("chaos: faults in cycles under load lose, duplicate and fork nothing; registers stay linearizable", async () => {
  const seed = seedOf(1); // five cycles: every kind of fault (kill9-nats, graceful-restart, sigstop-node, kill9-node)
  const cycles = Number(Deno.env.get("CHAOS_CYCLES") ?? 5);
  console.log(`[chaos] seed ${seed} (replay with CHAOS_SEED=${seed})`);
  const kinds = Deno.env.get("CHAOS_KINDS")?.split(",") as FaultKind[] | undefined;
  const report = await runChaos({ cycles, seed, ...(kinds ? { kinds } : {}) });
  for (const line of summarize(report)) console.log(line);
  if (Deno.env.get("CHAOS_VERBOSE")) {
    console.log([...report.errorSamples, ...report.tellsLost, ...report.nodeWarnings].join("\n"));
  }
  assert.deepEqual(violations(report), [], `invariant violations with CHAOS_SEED=${seed}`);
  assert.deepEqual(report.unacknowledged, [], `deposits never acknowledged (CHAOS_SEED=${seed})`);
  assert.deepEqual(report.anomalies, [], `anomalies (CHAOS_SEED=${seed})`);
  assert.equal(report.faults.length, cycles);
  assert.ok(report.ops.deposits.acked > 0 && report.ops.registers.known > 0, "the load ran");
});

// Liveness during graceful restarts. A closing node answers what it took or says "retry", and
// deposits (asks with idempotency keys) are resent when an attempt gets no answer in half its
// time, so none of them times out. Core NATS is at most once: across a cluster's routes, a
// request routed to a subscription in the moment it goes away can be lost, so a plain ask,
// register op or tell may still time out (it may or may not have been applied): counted, not
// failed.
Deno.test("chaos: graceful restarts under load: no deposit times out", async () => {
  const seed = seedOf(4_242);
  console.log(`[chaos] seed ${seed} (replay with CHAOS_SEED=${seed})`);
  const report = await runChaos({ cycles: 6, seed, kinds: ["graceful-restart"] });
  for (const line of summarize(report)) console.log(line);
  for (const line of report.errorSamples) console.log(`[chaos] ${line}`);
  if (Deno.env.get("CHAOS_VERBOSE")) console.log(report.nodeWarnings.join("\n"));
  assert.deepEqual(violations(report), [], `invariant violations with CHAOS_SEED=${seed}`);
  // A restart's claims, lookups and commits share one database file with the other nodes: a
  // busy database is `unavailable`, and nothing else there is an internal error.
  assert.equal(
    report.errors.internal ?? 0,
    0,
    `internal errors reached callers (CHAOS_SEED=${seed}): ${
      report.nodeWarnings.slice(0, 5).join(" | ")
    }`,
  );
  const timeouts = Object.entries(report.errorsByFault["graceful-restart"] ?? {})
    .filter(([what]) => what.endsWith(" timeout"));
  console.log(`[chaos] timeouts after graceful restarts: ${JSON.stringify(timeouts)}`);
  assert.deepEqual(
    timeouts.filter(([what]) => what.startsWith("deposit")),
    [],
    `deposits unanswered during graceful restarts (CHAOS_SEED=${seed})`,
  );
});
