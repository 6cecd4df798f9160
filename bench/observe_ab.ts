/**
 * Paired A/B of observability's cost with OpenTelemetry off: the code before it (`BENCH_BASE`,
 * default the merge base with `main`) against this checkout, both loaded in one client process
 * and each asking its own host node (another process) on one nats-server. The two take turns
 * every half second, `BENCH_PAIRS` times (default 20), so that the machine's other load hits
 * both alike; each pair gives a ratio (this checkout / base) and the median and quartiles of
 * those ratios are the result. The same for in-process asks, one at a time.
 *
 * `deno run -A bench/observe_ab.ts`
 *
 * @module
 */
import type { ActorDefinition, System } from "../mod.ts";
import type { AnyActorTypes } from "../spi.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { pct, spawnNode } from "./nats.ts";
import { snapshot } from "./observe.ts";

const here = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const PAYLOAD = new Uint8Array(64).fill(7);

/** One side: a client system of the checkout at `root`, asking its host. */
async function side(root: string, servers: string, prefix: string) {
  const url = (p: string) => new URL(p, `file://${root}/`).href;
  const { createSystem } = await import(url("mod.ts")) as typeof import("../mod.ts");
  const { natsMesh } = await import(
    url("adapters/nats/mod.ts")
  ) as typeof import("../adapters/nats/mod.ts");
  const { BenchEcho } = await import(url("bench/actors.ts")) as {
    BenchEcho: ActorDefinition<AnyActorTypes>;
  };
  const remote = await createSystem({ mesh: natsMesh({ servers, prefix, leaseTtl: 2000 }) });
  const local = await createSystem({ actors: [BenchEcho], leaseTtl: 600_000 });
  const r = remote.ref(BenchEcho, "warm");
  const l = local.ref(BenchEcho, "l1");
  return {
    ask: () => r.ask("ping" as never, PAYLOAD as never, { timeout: 5000 }),
    localAsk: () => l.ask("ping" as never, PAYLOAD as never),
    close: async () => {
      for (const s of [remote, local] as System[]) await s.close();
    },
  };
}

/** Asks per second with 64 in flight for `ms`. */
async function rate(fn: () => Promise<unknown>, ms: number): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (performance.now() - t0 < ms) {
      await fn();
      n++;
    }
  }));
  return n / ((performance.now() - t0) / 1000);
}

/** In-process asks per second one at a time for `ms` (yielding to timers every 1000). */
async function localRate(fn: () => Promise<unknown>, ms: number): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 1000; i++) await fn();
    n += 1000;
    await new Promise((r) => setTimeout(r, 0));
  }
  return n / ((performance.now() - t0) / 1000);
}

async function client(): Promise<void> {
  const servers = Deno.env.get("TROUPE_SERVERS")!;
  const pairs = Number(Deno.env.get("BENCH_PAIRS") ?? 20);
  const base = await side(Deno.env.get("BENCH_BASE_ROOT")!, servers, "ab-base");
  const head = await side(here, servers, "ab-head");
  for (const s of [base, head]) {
    for (let i = 0; i < 500; i++) await s.ask();
    await localRate(s.localAsk, 300);
  }
  const remote: number[] = [];
  const local: number[] = [];
  for (let i = 0; i < pairs; i++) {
    // Alternate which one goes first.
    const [a, b] = i % 2 === 0 ? [base, head] : [head, base];
    const ra = await rate(a.ask, 500);
    const rb = await rate(b.ask, 500);
    remote.push(a === head ? ra / rb : rb / ra);
    const la = await localRate(a.localAsk, 300);
    const lb = await localRate(b.localAsk, 300);
    local.push(a === head ? la / lb : lb / la);
  }
  await base.close();
  await head.close();
  const q = (xs: number[]) => [pct(xs, 0.25), pct(xs, 0.5), pct(xs, 0.75)];
  console.log(`RESULT ${JSON.stringify({ remote: q(remote), local: q(local), pairs })}`);
  Deno.exit(0);
}

if (Deno.env.get("BENCH_AB_CLIENT")) await client();
else if (import.meta.main) {
  const baseCommit = Deno.env.get("BENCH_BASE") ??
    new TextDecoder().decode(
      (await new Deno.Command("git", {
        args: ["merge-base", "HEAD", "main"],
        cwd: here,
        stdout: "piped",
      }).output()).stdout,
    ).trim();
  const baseDir = await snapshot(baseCommit);
  await using cluster = await startNatsCluster({ servers: 1, websocket: false });
  const servers = cluster.urls[0]!;
  const env = (prefix: string) => ({
    TROUPE_SERVERS: servers,
    TROUPE_PREFIX: prefix,
    TROUPE_NODE: `${prefix}-host`,
    TROUPE_LEASE_TTL: "2000",
  });
  const baseHost = spawnNode(env("ab-base"), `${baseDir}/bench/nats_node.ts`);
  const headHost = spawnNode(env("ab-head"), `${here}/bench/nats_node.ts`);
  try {
    await Promise.all([baseHost.ready, headHost.ready]);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname],
      env: { TROUPE_SERVERS: servers, BENCH_AB_CLIENT: "1", BENCH_BASE_ROOT: baseDir },
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const line = new TextDecoder().decode(out.stdout).split("\n").find((l) =>
      l.startsWith("RESULT ")
    );
    if (!line) throw new Error(`The client printed no result (exit ${out.code})`);
    const r = JSON.parse(line.slice(7)) as { remote: number[]; local: number[]; pairs: number };
    const f = (q: number[]) =>
      `median ${((q[1]! - 1) * 100).toFixed(1)} % (quartiles ${
        ((q[0]! - 1) * 100).toFixed(1)
      } % … ${((q[2]! - 1) * 100).toFixed(1)} %)`;
    console.log(
      `Paired A/B, OpenTelemetry off, ${r.pairs} pairs — ${new Date().toISOString()} — base ${
        baseCommit.slice(0, 8)
      } vs this checkout; rate of this checkout / base, minus 1:`,
    );
    console.log(`  remote ask, 64 in flight: ${f(r.remote)}`);
    console.log(`  in-process ask, one at a time: ${f(r.local)}`);
  } finally {
    await baseHost.stop();
    await headHost.stop();
    await Deno.remove(baseDir, { recursive: true });
  }
}
