/**
 * Failover of many actors: a node process hosting `actors` active accounts (each with a few
 * events) is killed with SIGKILL; another node process takes over; time from the kill until
 * every account answered a client again, against the same for one account. Both nodes share
 * one libSQL file and one nats-server (loopback); `leaseTtl` 2000 ms, so about 2.3 s of it is
 * the time it takes to declare the killed node dead.
 *
 * Run: `deno run -A bench/failover.ts [actors…]` (default `1 10000`).
 *
 * @module
 */

import { createSystem } from "../mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster, startNodeProcess } from "../adapters/testing/mod.ts";
import { Account } from "../examples/bank/actors.ts";

/** Result of {@link benchFailoverAcross}. */
export interface FailoverAcrossResult {
  /** Accounts the killed node hosted. */
  readonly actors: number;
  /** From the kill until every account answered from the other node, ms. */
  readonly allAnsweredMs: number;
  /** From the kill until the first answered, ms. */
  readonly firstAnsweredMs: number;
}

/**
 * Kills (SIGKILL) a node hosting `actors` accounts and measures how long until all answer.
 *
 * @example
 * ```ts
 * import { benchFailoverAcross } from "./failover.ts";
 * console.log(await benchFailoverAcross({ actors: 100 }));
 * ```
 */
export async function benchFailoverAcross(
  options: { actors?: number; leaseTtl?: number; inFlight?: number } = {},
): Promise<FailoverAcrossResult> {
  const actors = options.actors ?? 10_000;
  const leaseTtl = options.leaseTtl ?? 2000;
  const inFlight = options.inFlight ?? 500;
  const dir = await Deno.makeTempDir({ prefix: "troupe-failover-" });
  await using cluster = await startNatsCluster({ servers: 1 });
  const prefix = `f${crypto.randomUUID().slice(0, 8)}`;
  const env = {
    TROUPE_SERVERS: cluster.urls[0]!,
    TROUPE_JOURNAL: `file:${dir}/bank.db`,
    TROUPE_PREFIX: prefix,
    TROUPE_LEASE_TTL: String(leaseTtl),
  };
  const script = new URL("../tests/nodes/bank_node.ts", import.meta.url);
  const victim = await startNodeProcess({ script, env: { ...env, TROUPE_NODE: "victim" } });
  const client = await createSystem({
    mesh: natsMesh({ servers: cluster.urls[0]!, prefix, leaseTtl }),
    node: "client",
    logger: "error",
  });
  let survivor: Awaited<ReturnType<typeof startNodeProcess>> | undefined;
  try {
    const ids = Array.from({ length: actors }, (_, i) => `acc-${i}`);
    const each = async (fn: (id: string) => Promise<unknown>) => {
      let next = 0;
      await Promise.all(Array.from({ length: Math.min(inFlight, ids.length) }, async () => {
        while (next < ids.length) await fn(ids[next++]!);
      }));
    };
    // Every account active on the victim (the only host), with three events each.
    await each(async (id) => {
      for (let k = 0; k < 3; k++) {
        await client.ref(Account, id).ask("deposit", { amount: 1 }, { timeout: 30_000 });
      }
    });
    survivor = await startNodeProcess({ script, env: { ...env, TROUPE_NODE: "survivor" } });
    // The client knows both nodes before the kill.
    const deadline = performance.now() + 30_000;
    while (!client.directory.nodes().some((n) => n.id === "survivor")) {
      if (performance.now() > deadline) throw new Error("the survivor was never seen");
      await new Promise((r) => setTimeout(r, 10));
    }
    victim.kill("SIGKILL");
    const t0 = performance.now();
    let first = 0;
    await each(async (id) => {
      for (;;) {
        try {
          const balance = await client.ref(Account, id).ask("balance", undefined, {
            timeout: 5_000,
          });
          if (balance !== 3) throw new Error(`account ${id} answered ${balance}, not 3`);
          first ||= performance.now() - t0;
          return;
        } catch (err) {
          if (err instanceof Error && /answered/.test(err.message)) throw err;
          // unavailable, timeout: the node is not declared dead yet; ask again
        }
      }
    });
    return { actors, allAnsweredMs: performance.now() - t0, firstAnsweredMs: first };
  } finally {
    await client.close();
    await victim.stop();
    await survivor?.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const sizes = Deno.args.length > 0 ? Deno.args.map(Number) : [1, 10_000];
  for (const actors of sizes) {
    const r = await benchFailoverAcross({ actors });
    console.log(
      `kill -9 of the node hosting ${r.actors} accounts: first answered after ${
        Math.round(r.firstAnsweredMs)
      } ms, all after ${Math.round(r.allAnsweredMs)} ms (leaseTtl 2000 ms)`,
    );
  }
}
