/**
 * The chaos run, long form: 50 fault cycles (kill -9 / SIGSTOP past the lease / graceful
 * restart of a node, kill -9 of a NATS server) against 3 node processes on a 3-server NATS
 * cluster under a steady load, then the invariants are checked (tests/chaos/chaos.ts); and the
 * floods (tests/chaos/flood.ts). Prints the figures of bench/README.md ("Chaos").
 *
 * `deno run -A bench/chaos.ts [cycles]`; `CHAOS_SEED=<n>` replays a fault schedule;
 * `CHAOS_SKIP_FLOODS=1` runs the chaos part only. Exits 1 when an invariant is violated.
 *
 * @module
 */
import { FAULT_KINDS, runChaos, summarize, violations } from "../tests/chaos/chaos.ts";
import { type ActivationFloodResult, mailboxFlood } from "../tests/chaos/flood.ts";

const cycles = Number(Deno.args[0] ?? 50);
const seed = Number(Deno.env.get("CHAOS_SEED") ?? Math.floor(Math.random() * 2 ** 31));
const MB = 1024 * 1024;
const f = (n: number) => Math.round(n).toLocaleString("en");

console.log(
  `Troupe chaos — ${
    new Date().toISOString()
  } — ${Deno.build.os} ${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
);
console.log(`seed ${seed} (replay with CHAOS_SEED=${seed}), ${cycles} cycles`);
const r = await runChaos({ cycles, seed, registers: Math.max(150, cycles * 20) });
for (const line of summarize(r)) console.log(line);
const count = (k: string) => r.faults.filter((x) => x.kind === k).length;
const worstRecovery = (k: string) =>
  Math.max(0, ...r.faults.filter((x) => x.kind === k).map((x) => x.recoveredMs));
console.log("\n| what | figure |\n| --- | --- |");
console.log(
  `| seed, cycles, duration | ${seed}, ${cycles}, ${(r.durationMs / 1000).toFixed(0)} s |`,
);
console.log(
  `| operations | ${f(r.ops.total)}: ${f(r.ops.deposits.sent)} idempotent deposits, ${
    f(r.ops.plain.sent)
  } plain asks, ${f(r.ops.tells.sent)} tells, ${f(r.ops.registers.ops)} register ops |`,
);
console.log(
  `| faults | ${FAULT_KINDS.map((k) => `${k} ${count(k)}`).join(", ")} |`,
);
console.log(
  `| acknowledged | ${f(r.ops.deposits.acked)} idempotent deposits (${
    f(r.ops.deposits.attempts)
  } attempts), ${f(r.ops.plain.acked)} plain asks, ${f(r.ops.registers.known)} register ops (${
    f(r.ops.registers.unknown)
  } unknown outcome, ${f(r.ops.registers.concurrent)} overlapping another on their key) |`,
);
console.log(`| lost | ${r.lost.length + r.registerLost.length} |`);
console.log(`| duplicated | ${r.duplicated.length} |`);
console.log(
  `| phantom / seq gaps / forks / balance mismatches | ${r.phantom.length} / ${r.seqGaps.length} / ${r.forks.length} / ${r.balances.length} |`,
);
console.log(
  `| linearizability violations | ${r.linearizability.length} (undecided ${r.undecided.length}; ${r.ops.registers.keys} keys, at most ${r.ops.registers.maxPerKey} ops on one, longest search ${
    f(r.maxSearchSteps)
  } steps) |`,
);
console.log(
  `| tells accepted, never applied (at most once) | ${r.tellsLost.length} of ${
    f(r.ops.tells.accepted)
  } |`,
);
for (const k of FAULT_KINDS) {
  if (!count(k)) continue;
  console.log(
    `| worst unavailability, ${k} | ${f(r.unavailability[k] ?? 0)} ms (three nodes seen again ≤ ${
      f(worstRecovery(k))
    } ms after the fault) |`,
  );
}
console.log(`| anomalies | ${r.anomalies.length ? r.anomalies.join("; ") : "none"} |`);

if (!Deno.env.get("CHAOS_SKIP_FLOODS")) {
  console.log("\nFloods (one in-process node)");
  const m = await mailboxFlood();
  console.log(
    `| 10x the mailbox at one actor | ${f(m.sent)} sent: ${f(m.answered)} answered, ${
      f(m.overloaded)
    } overloaded (last refusal ${f(m.lastRefusalMs)} ms after the first send; all settled after ${
      f(m.settledMs)
    } ms); others' p99 ${m.underFlood.p99.toFixed(3)} ms vs ${
      m.baseline.p99.toFixed(3)
    } ms baseline (ratio ${(m.underFlood.p99 / m.baseline.p99).toFixed(2)}) |`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("../tests/chaos/flood_child.ts", import.meta.url).href,
    ],
    stdout: "piped",
  }).output();
  const line = new TextDecoder().decode(out.stdout).split("\n").find((l) =>
    l.startsWith("RESULT ")
  );
  if (line) {
    const a = JSON.parse(line.slice(7)) as ActivationFloodResult;
    const full = a.heapFull - a.heapEmpty;
    const after = a.heapAfter - a.heapEmpty;
    console.log(
      `| ${f(a.randomIds)} random ids, maxActivations ${f(a.maxActivations)} | heap +${
        (full / MB).toFixed(1)
      } MB after ${f(a.maxActivations)} ids, +${(after / MB).toFixed(1)} MB after ${
        f(a.randomIds)
      } more (ratio ${(after / full).toFixed(2)}, ${f((after - full) / a.randomIds)} B per id); ${
        f(a.rate)
      } asks/s |`,
    );
  } else console.log("activation flood: the child process failed");
}
if (violations(r).length > 0) Deno.exit(1);
