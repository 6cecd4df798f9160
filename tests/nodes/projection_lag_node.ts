/**
 * A node process of tests/projection_lag_test.ts, run with `OTEL_DENO=true`: alone (in-process
 * mesh, memory journal), node `lag-1`, it commits three events of `account`, then runs
 * projection `stuck`, whose handler never returns from its first event (so its lag grows), and
 * projection `done`, which handles all three (its lag is 0). Prints `READY {"node"}`.
 */
import { createSystem } from "../../mod.ts";
import { Account } from "../../examples/bank/actors.ts";

const system = await createSystem({ actors: [Account], node: "lag-1", logger: "warn" });
for (let i = 1; i <= 3; i++) await system.ref(Account, "a").ask("deposit", { amount: i });
system.projection("stuck", { from: [Account], handle: () => new Promise<never>(() => {}) });
system.projection("done", { from: [Account], handle() {} });
console.log(`READY ${JSON.stringify({ node: system.node })}`);
