/**
 * The chaos test, short form: 5 fault cycles against 3 node processes on a 3-server NATS
 * cluster under a steady load, then the invariants are checked (see ./chaos.ts). The seed is
 * printed; `CHAOS_SEED=<n>` replays its fault schedule, `CHAOS_CYCLES=<n>` changes the
 * number of cycles. The long form is `deno run -A bench/chaos.ts`.
 */
import assert from "node:assert/strict";
import { runChaos, summarize, violations } from "./chaos.ts";

Deno.test("chaos: faults in cycles under load lose, duplicate and fork nothing; registers stay linearizable", async () => {
  const seed = Number(Deno.env.get("CHAOS_SEED") ?? Math.floor(Math.random() * 2 ** 31));
  const cycles = Number(Deno.env.get("CHAOS_CYCLES") ?? 5);
  console.log(`[chaos] seed ${seed} (replay with CHAOS_SEED=${seed})`);
  const report = await runChaos({ cycles, seed });
  for (const line of summarize(report)) console.log(line);
  if (Deno.env.get("CHAOS_VERBOSE")) {
    console.log([...report.tellsLost, ...report.nodeWarnings].join("\n"));
  }
  assert.deepEqual(violations(report), [], `invariant violations with CHAOS_SEED=${seed}`);
  assert.deepEqual(report.unacknowledged, [], `deposits never acknowledged (CHAOS_SEED=${seed})`);
  assert.deepEqual(report.anomalies, [], `anomalies (CHAOS_SEED=${seed})`);
  assert.equal(report.faults.length, cycles);
  assert.ok(report.ops.deposits.acked > 0 && report.ops.registers.known > 0, "the load ran");
});
