/**
 * Routing at scale (issue "Routing addressed to nodes"), each figure next to a baseline of the
 * same run:
 *
 * 1. **Cluster**: a 3-server nats-server cluster, `--hosts` node processes (default 2) on one
 *    shared libSQL journal file, this process as the client. Before and after activating
 *    `--actors` actors (default 20,000): NATS subscriptions per server (`/subsz`), server
 *    memory (`/varz` mem), heap per idle actor in each node and in the client (after gc);
 *    activation rate (against the journal's own `activate()` on a file of the same kind), ask
 *    rate over all actors (against raw request/reply to a responder in the host processes),
 *    CPU per ask in every process; then `kill -9` of one host: time until every actor it held
 *    answers from another node.
 * 2. **Many nodes**: (a) the cost of deciding a route per ask at 10/50/100 members (a real
 *    membership on the in-process mesh): `Router.decide` against the former per-ask
 *    filter + sort + hash (`rendezvous(membership.hostsOf(type), key)`); (b) `--sim-procs`
 *    processes × `--sim-systems` nodes each (default 5 × 10 = 50 nodes) on the same cluster:
 *    subscriptions, idle CPU of membership per node, ask rate over `--sim-actors` actors,
 *    and `kill -9` of one process (all its nodes at once) until its actors answer elsewhere.
 *
 * Run: `deno run -A --v8-flags=--expose-gc bench/scale.ts [--actors=20000] [--hosts=2]
 * [--lease-ttl=5000] [--seconds=3] [--skip-cluster] [--skip-sim]`.
 *
 * @module
 */
import { createSystem, type System } from "../mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { type NatsCluster, startNatsCluster } from "../adapters/testing/mod.ts";
import { connect } from "@nats-io/transport-node";
import { createClient } from "@libsql/client/node";
import { inProcessMesh } from "../src/mesh/in_process.ts";
import { type Membership, startMembership } from "../src/directory/membership.ts";
import { rendezvous } from "../src/directory/placement.ts";
import { Router } from "../src/dispatch/router.ts";
import { Call } from "../src/dispatch/call.ts";
import type { MeshConnection } from "../src/mesh/types.ts";
import { Scale } from "./scale_actors.ts";
import {
  CpuMeter,
  cpuMicros,
  type DenoChild,
  loadAverage,
  pooled,
  quantile,
  rawMux,
  serverStats,
  spawnDeno,
  throughput,
} from "./_proc.ts";

const args = new Map(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string?]).map((
    [k, v],
  ) => [k, v ?? "true"]),
);
const num = (k: string, d: number) => Number(args.get(k) ?? d);

const f = (n: number | undefined, digits = 2) =>
  n === undefined || Number.isNaN(n)
    ? "-"
    : Math.abs(n) >= 100
    ? Math.round(n).toLocaleString("en")
    : n.toFixed(digits);

const NODE_SCRIPT = new URL("./scale_node.ts", import.meta.url);

async function gcHeap(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("Run with --v8-flags=--expose-gc");
  gc();
  await new Promise((r) => setTimeout(r, 100));
  gc();
  return Deno.memoryUsage().heapUsed;
}

async function nodeHeap(host: DenoChild): Promise<number> {
  const line = await host.command("MEM", "MEM", 60_000);
  return (JSON.parse(line.slice(4)) as { heap: number }).heap;
}

async function allStats(cluster: NatsCluster) {
  return await Promise.all(cluster.servers.map((s) => serverStats(s.monitorUrl)));
}

/** Ask `ids` until each answered from a node other than `dead`; times from `t0`. */
async function untilAnswered(
  client: System,
  ids: string[],
  dead: Set<string>,
  t0: number,
  deadlineMs: number,
): Promise<
  {
    times: number[];
    errors: Record<string, number>;
    byMessage: Record<string, string>;
    wrong: number;
  }
> {
  const times: number[] = [];
  const errors: Record<string, number> = {};
  const byMessage: Record<string, string> = {};
  let wrong = 0;
  await pooled(ids.length, 64, async (i) => {
    const ref = client.ref(Scale, ids[i]!);
    while (performance.now() - t0 < deadlineMs) {
      try {
        const node = await ref.ask("where", undefined, {
          timeout: Math.max(100, deadlineMs - (performance.now() - t0)),
        });
        if (dead.has(node)) {
          wrong++;
          continue;
        }
        times.push(performance.now() - t0);
        return;
      } catch (err) {
        const code = (err as { code?: string }).code ?? "other";
        errors[code] = (errors[code] ?? 0) + 1;
        // Counted by message too, actor ids and node names left out.
        const what = `${code}: ${
          String(err).replace(/scale\/\S+/g, "<actor>").replace(/"[^"]*"/g, '"…"').slice(0, 120)
        }`;
        byMessage[what] = String(Number(byMessage[what] ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  });
  return { times, errors, byMessage, wrong };
}

/**
 * Asks `where` of every id (64 in flight), retrying failures (counted by code, at most 20
 * tries each); `where[i]` gets the node that answered.
 */
async function activateAll(
  client: System,
  ids: string[],
  where: string[],
): Promise<Record<string, number>> {
  const errors: Record<string, number> = {};
  await pooled(ids.length, 64, async (i) => {
    for (let attempt = 0;; attempt++) {
      try {
        where[i] = await client.ref(Scale, ids[i]!).ask("where", undefined, { timeout: 30_000 });
        return;
      } catch (err) {
        const code = (err as { code?: string }).code ?? String(err);
        errors[code] = (errors[code] ?? 0) + 1;
        if (attempt >= 20) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
  return errors;
}

// ---- 1. the cluster ---------------------------------------------------------------------------

interface ClusterResult {
  lines: string[];
}

async function benchCluster(cluster: NatsCluster, dir: string): Promise<ClusterResult> {
  const n = num("actors", 20_000);
  const hostCount = num("hosts", 2);
  const leaseTtl = num("lease-ttl", 5000);
  const seconds = num("seconds", 3);
  const prefix = "scale";
  const journalUrl = `file:${dir}/cluster.db`;
  const lines: string[] = [];
  const out = (s: string) => {
    console.log(s);
    lines.push(s);
  };

  // The raw floor of an activation: the journal's own activate() (claim + epoch bump + read)
  // on a file of the same kind, same concurrency, no messaging.
  {
    const j = libsqlJournal({ url: `file:${dir}/raw.db` });
    await j.activate("warm/0", { node: "raw" });
    const m = Math.min(n, 10_000);
    const t0 = performance.now();
    await pooled(m, 64, (i) => j.activate(`scale/r${i}`, { node: "raw" }));
    const rate = m / ((performance.now() - t0) / 1000);
    await j.close();
    // The floor under it: one-row write transactions on a raw connection, same pragmas.
    const c = createClient({ url: `file:${dir}/floor.db` });
    await c.execute("PRAGMA journal_mode = WAL");
    await c.execute("PRAGMA synchronous = FULL");
    await c.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)");
    const t1 = performance.now();
    for (let i = 0; i < Math.min(m, 2000); i++) {
      await c.batch([{ sql: "INSERT INTO t VALUES (?, ?)", args: [`k${i}`, i] }], "write");
    }
    const floor = Math.min(m, 2000) / ((performance.now() - t1) / 1000);
    c.close();
    out(
      `journal activate() alone, ${m} actors, 64 in flight, one process: ${f(rate)}/s ` +
        `(one-row write transactions on a raw connection, WAL, synchronous=FULL: ${f(floor)}/s)`,
    );
    (globalThis as { rawActivationRate?: number }).rawActivationRate = rate;
  }

  const hosts: DenoChild[] = [];
  for (let i = 0; i < hostCount; i++) {
    hosts.push(
      await spawnDeno(NODE_SCRIPT, {
        TROUPE_SERVERS: cluster.urls[(i + 1) % cluster.urls.length]!,
        TROUPE_JOURNAL: journalUrl,
        TROUPE_NODE: `host-${i}`,
        TROUPE_PREFIX: prefix,
        TROUPE_LEASE_TTL: String(leaseTtl),
      }, { denoFlags: ["--v8-flags=--expose-gc"] }),
    );
  }
  const client = await createSystem({
    mesh: natsMesh({ servers: cluster.urls[0]!, prefix, leaseTtl }),
    node: "scale-client",
    logger: "error",
  });
  const raw = await connect({ servers: cluster.urls[0]!, noAsyncTraces: true });
  const rawBytes = new Uint8Array(16).fill(7);
  const rawAsk = () => raw.request(`${prefix}.raw`, rawBytes, { timeout: 10_000 });
  try {
    // Every host seen by the client, then warm-up (JIT, connections, journal files).
    for (const deadline = performance.now() + 30_000;;) {
      if (client.directory.nodes().filter((x) => x.id.startsWith("host-")).length === hostCount) {
        break;
      }
      if (performance.now() > deadline) throw new Error("hosts not seen by the client");
      await new Promise((r) => setTimeout(r, 50));
    }
    await activateAll(client, Array.from({ length: 2000 }, (_, i) => `warm-${i}`), []);
    await pooled(2000, 64, () => rawAsk());

    const where = new Array<string>(n).fill("");
    const ids = Array.from({ length: n }, (_, i) => `a${i}`);
    await new Promise((r) => setTimeout(r, 1000));
    const before = await allStats(cluster);
    const heapBefore = await Promise.all(hosts.map(nodeHeap));
    const clientBefore = await gcHeap();

    // Activation of n actors, 256 in flight.
    const pids: (number | "self")[] = ["self", ...hosts.map((h) => h.pid)];
    for (const s of cluster.servers) pids.push(s.pid!);
    const cpu = new CpuMeter(pids);
    cpu.start();
    const t0 = performance.now();
    const activationErrors = await activateAll(client, ids, where);
    const activationMs = performance.now() - t0;
    const activationCpu = cpu.stop();

    await new Promise((r) => setTimeout(r, 1000));
    const after = await allStats(cluster);
    const heapAfter = await Promise.all(hosts.map(nodeHeap));
    const clientAfter = await gcHeap();

    const perNode = new Map<string, number>();
    for (const w of where) perNode.set(w, (perNode.get(w) ?? 0) + 1);
    const rawRate = (globalThis as { rawActivationRate?: number }).rawActivationRate!;
    const actRate = n / (activationMs / 1000);
    out(
      `activation of ${
        f(n)
      } actors over ${hostCount} host processes (64 in flight, one shared libSQL file): ${
        f(actRate)
      }/s; journal activate() alone ${f(rawRate)}/s → ratio ${
        f(actRate / rawRate)
      }; errors retried: ${JSON.stringify(activationErrors)}`,
    );
    out(
      `  CPU per activation: client ${f(activationCpu[0]! / n)} µs, hosts ${
        activationCpu.slice(1, 1 + hostCount).map((c) => f(c / n)).join(" + ")
      } µs, nats-servers ${activationCpu.slice(1 + hostCount).map((c) => f(c / n)).join(" + ")} µs`,
    );
    out(
      `  actors per host: ${
        hosts.map((_, i) => `host-${i} ${f(perNode.get(`host-${i}`) ?? 0)}`).join(", ")
      }`,
    );
    const subsBefore = before.map((s) => s.subs);
    const subsAfter = after.map((s) => s.subs);
    out(
      `NATS subscriptions per server, before → after ${f(n)} actors: ${
        cluster.servers.map((s, i) => `${s.name} ${subsBefore[i]} → ${subsAfter[i]}`).join(", ")
      } (total ${subsBefore.reduce((a, b) => a + b)} → ${
        subsAfter.reduce((a, b) => a + b)
      }; ${hostCount} hosts × 1 type)`,
    );
    const memDelta = after.map((s, i) => s.mem - before[i]!.mem);
    out(
      `nats-server memory (RSS), before → after: ${
        cluster.servers.map((s, i) =>
          `${s.name} ${f(before[i]!.mem / 2 ** 20, 1)} → ${f(after[i]!.mem / 2 ** 20, 1)} MiB`
        ).join(", ")
      }; summed over the servers ${f(memDelta.reduce((a, b) => a + b) / n, 1)} B per actor`,
    );
    for (let i = 0; i < hostCount; i++) {
      const count = perNode.get(`host-${i}`) ?? 0;
      out(
        `heap per idle actor in host-${i}: ${
          f((heapAfter[i]! - heapBefore[i]!) / Math.max(1, count), 0)
        } B (${f(heapBefore[i]! / 2 ** 20, 1)} → ${f(heapAfter[i]! / 2 ** 20, 1)} MiB, ${
          f(count)
        } actors)`,
      );
    }
    out(
      `client heap per actor it has talked to (routing state): ${
        f((clientAfter - clientBefore) / n, 1)
      } B`,
    );

    // Asks over all n actors vs raw request/reply to the hosts' responders, same cluster route.
    const refs = ids.map((id) => client.ref(Scale, id));
    let k = 0;
    const ask = () => refs[k = (k + 7919) % n]!.ask("where", undefined, { timeout: 10_000 });
    const muxAsk = rawMux(raw, `${prefix}.raw`, rawBytes);
    for (let i = 0; i < 3000; i++) await Promise.all([ask(), rawAsk(), muxAsk()]);
    const phases = { request: rawAsk, mux: muxAsk, ask } as const;
    const runs: Record<string, number[]> = { request: [], mux: [], ask: [] };
    const cpus: Record<string, number[][]> = { request: [], mux: [], ask: [] };
    const writes: Record<string, number[][]> = { request: [], mux: [], ask: [] };
    for (let round = 0; round < 3; round++) {
      for (const [name, fn] of Object.entries(phases)) {
        let count = 0;
        const counted = async () => {
          await fn();
          count++;
        };
        cpu.start();
        const rate = await throughput(counted, seconds / 2);
        const used = cpu.stop();
        runs[name]!.push(rate);
        cpus[name]!.push(used.map((c) => c / count));
        writes[name]!.push(cpu.writes().map((w) => w / count));
      }
    }
    const med = (name: string, j: number) => quantile(cpus[name]!.map((x) => x[j]!), 0.5);
    const sum = (name: string, from: number, to: number) => {
      let s = 0;
      for (let j = from; j < to; j++) s += med(name, j);
      return s;
    };
    const rate = (name: string) => quantile(runs[name]!, 0.5);
    out(
      `asks over the ${f(n)} actors, 64 in flight (client on ${
        cluster.servers[0]!.name
      }, hosts on the others): ${
        f(rate("ask"))
      }/s vs raw request/reply to the hosts: client request() ${f(rate("request"))}/s → ratio ${
        f(rate("ask") / rate("request"))
      }, hand-made mux ${f(rate("mux"))}/s → ratio ${f(rate("ask") / rate("mux"))}`,
    );
    const side = (what: string, from: number, to: number) =>
      `${what}${what ? " " : ""}${f(sum("ask", from, to))} vs ${f(sum("mux", from, to))} / ${
        f(sum("request", from, to))
      }`;
    const all = (name: string) => sum(name, 0, pids.length);
    out(
      `  CPU µs per request, Troupe vs raw mux / raw request(): ${side("client", 0, 1)}, hosts ${
        side("", 1, 1 + hostCount)
      }, nats-servers ${side("", 1 + hostCount, pids.length)}; all processes ${f(all("ask"))} vs ${
        f(all("mux"))
      } / ${f(all("request"))} → ratio to mux ${f(all("ask") / all("mux"))}`,
    );

    if (args.has("skip-failover")) return { lines };
    // kill -9 of host-0: every actor it held must answer from another node.
    const victim = "host-0";
    const held = ids.filter((_, i) => where[i] === victim);
    hosts[0]!.kill("SIGKILL");
    const killedAt = performance.now();
    await hosts[0]!.exited;
    const r = await untilAnswered(client, held, new Set([victim]), killedAt, leaseTtl * 5 + 60_000);
    out(
      `kill -9 of ${victim} holding ${
        f(held.length)
      } actors (leaseTtl ${leaseTtl} ms): first answered from another node after ${
        f(quantile(r.times, 0))
      } ms, p50 ${f(quantile(r.times, 0.5))} ms, all ${f(r.times.length)} after ${
        f(Math.max(...r.times))
      } ms (goal for one actor: ≤ leaseTtl + 2 s = ${leaseTtl + 2000} ms); errors retried: ${
        JSON.stringify(r.errors)
      }; answers from the dead node: ${r.wrong}`,
    );
    for (const [what, n] of Object.entries(r.byMessage)) out(`  ${n}× ${what}`);
    const firstSecond = r.times.filter((t) => t <= leaseTtl + 2000).length;
    out(
      `  answered within leaseTtl + 2 s: ${f(firstSecond)} of ${
        f(held.length)
      } (the rest wait for re-activation on the survivors, bound by the journal's activation rate)`,
    );
    return { lines };
  } finally {
    await client.close().catch(() => {});
    await raw.close().catch(() => {});
    await Promise.all(hosts.map((h) => h.stop()));
  }
}

// ---- 2a. deciding a route ---------------------------------------------------------------------

async function benchDecide(): Promise<string[]> {
  const lines: string[] = [];
  const mesh = inProcessMesh();
  const conns: MeshConnection[] = [];
  const members: Membership[] = [];
  const ttl = 60_000; // no expiry during the measurement
  const join = async (id: string, types: string[]) => {
    const conn = await mesh.connect({ node: id });
    conns.push(conn);
    const m = await startMembership(conn, {
      prefix: "sim",
      node: { id, types, since: Date.now() },
      ttl,
    });
    members.push(m);
    return m;
  };
  try {
    const self = await join("client", []);
    const router = new Router({
      node: "client",
      membership: self,
      defs: new Map(),
      isLocal: () => false,
    });
    const calls = Array.from({ length: 200_000 }, (_, i) => i);
    const makeCalls = () =>
      calls.map((i) =>
        new Call({
          kind: "ask",
          type: "account",
          id: `user-${i * 7919 % 1_000_003}`,
          handler: "get",
          payload: null,
          deadline: performance.now() + 60_000,
          chain: [],
        }, { resolve() {}, reject() {} })
      );
    let joined = 0;
    for (const size of [10, 50, 100]) {
      while (joined < size) {
        await join(`node-${String(joined).padStart(3, "0")}`, ["account", "cart"]);
        joined++;
      }
      for (const deadline = performance.now() + 10_000; self.hostsOf("account").length < size;) {
        if (performance.now() > deadline) throw new Error("members not seen");
        await new Promise((r) => setTimeout(r, 10));
      }
      // Same owner both ways (the placement changed its hash, not its answer's spread).
      let sink = 0;
      const rounds: { old: number[]; now: number[]; oldCpu: number[]; nowCpu: number[] } = {
        old: [],
        now: [],
        oldCpu: [],
        nowCpu: [],
      };
      for (let round = 0; round < 4; round++) {
        // The former per-ask placement: the live members filtered and sorted, each hashed.
        let cs = makeCalls();
        let c0 = cpuMicros();
        let t0 = performance.now();
        for (const c of cs) {
          sink += rendezvous(self.hostsOf(c.type), `${c.type}/${c.id}`)!.length;
        }
        if (round > 0) {
          rounds.old.push((performance.now() - t0) * 1000 / cs.length);
          rounds.oldCpu.push((cpuMicros() - c0) / cs.length);
        }
        cs = makeCalls();
        c0 = cpuMicros();
        t0 = performance.now();
        for (const c of cs) {
          const d = router.decide(c);
          if (d.to === "node") sink += d.node.length;
        }
        if (round > 0) {
          rounds.now.push((performance.now() - t0) * 1000 / cs.length);
          rounds.nowCpu.push((cpuMicros() - c0) / cs.length);
        }
      }
      if (sink < 0) console.log(sink);
      const line =
        `deciding a route at ${size} members (200k asks to distinct actors): Router.decide ${
          f(quantile(rounds.now, 0.5), 3)
        } µs (CPU ${f(quantile(rounds.nowCpu, 0.5), 3)} µs) vs former filter + sort + hash ${
          f(quantile(rounds.old, 0.5), 3)
        } µs (CPU ${f(quantile(rounds.oldCpu, 0.5), 3)} µs) per ask → ${
          f(quantile(rounds.oldCpu, 0.5) / quantile(rounds.nowCpu, 0.5), 1)
        }× less CPU`;
      console.log(line);
      lines.push(line);
    }
    router.close();
  } finally {
    for (const m of members.reverse()) await m.close().catch(() => {});
    for (const c of conns) await c.close().catch(() => {});
  }
  return lines;
}

// ---- 2b. many nodes ---------------------------------------------------------------------------

const membershipAtRest = "membership at rest with {N} nodes, no traffic: {FIGURES}";

/** CPU of `hosts` (running `nodes` nodes) and of the servers over 5 s with no traffic. */
async function restingCost(hosts: number[], servers: number[], nodes: number): Promise<string> {
  await new Promise((r) => setTimeout(r, 2000));
  const idle = new CpuMeter([...hosts, ...servers]);
  idle.start();
  await new Promise((r) => setTimeout(r, 5000));
  const used = idle.stop();
  const perNode = used.slice(0, hosts.length).reduce((a, b) => a + b) / 5 / nodes;
  const server = used.slice(hosts.length).reduce((a, b) => a + b) / 5;
  return `${f(perNode / 1000, 2)} ms CPU per node per s (${
    f(perNode / 1e4, 2)
  } % of a core); nats-servers together ${f(server / 1e4, 1)} % of a core`;
}

async function waitNodes(client: System, n: number): Promise<void> {
  for (const deadline = performance.now() + 60_000;;) {
    if (client.directory.nodes().length >= n) return;
    if (performance.now() > deadline) {
      throw new Error(`the client sees ${client.directory.nodes().length} of ${n} nodes`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function benchManyNodes(cluster: NatsCluster, dir: string): Promise<string[]> {
  const procs = num("sim-procs", 5);
  const per = num("sim-systems", 10);
  const actors = num("sim-actors", 5000);
  const leaseTtl = num("lease-ttl", 5000);
  const seconds = num("seconds", 3);
  const prefix = "sim";
  const lines: string[] = [];
  const out = (s: string) => {
    console.log(s);
    lines.push(s);
  };
  const base = await allStats(cluster);
  const hosts: DenoChild[] = [];
  const client = await createSystem({
    mesh: natsMesh({ servers: cluster.urls[0]!, prefix, leaseTtl }),
    node: "sim-client",
    logger: "error",
  });
  try {
    let t0 = performance.now();
    for (let i = 0; i < procs; i++) {
      if (i === 1 && procs > 1) {
        // Membership at rest with the first process's nodes only, to compare with all of them.
        await waitNodes(client, per);
        out(
          membershipAtRest.replace("{N}", String(per)).replace(
            "{FIGURES}",
            await restingCost([hosts[0]!.pid], cluster.servers.map((s) => s.pid!), per),
          ),
        );
        t0 += 7000; // the resting measurement is not start-up time
      }
      hosts.push(
        await spawnDeno(NODE_SCRIPT, {
          TROUPE_SERVERS: cluster.urls[i % cluster.urls.length]!,
          TROUPE_JOURNAL: `file:${dir}/sim.db`,
          TROUPE_NODE: `p${i}`,
          TROUPE_PREFIX: prefix,
          TROUPE_LEASE_TTL: String(leaseTtl),
          SCALE_SYSTEMS: String(per),
        }, { readyTimeout: 120_000 }),
      );
    }
    const total = procs * per;
    await waitNodes(client, total);
    out(
      `${total} nodes in ${procs} processes (leaseTtl ${leaseTtl} ms) started one process after the other and seen by a client in ${
        f(performance.now() - t0)
      } ms`,
    );
    const pids = hosts.map((h) => h.pid);
    const servers = cluster.servers.map((s) => s.pid!);
    out(
      membershipAtRest.replace("{N}", String(total)).replace(
        "{FIGURES}",
        await restingCost(pids, servers, total),
      ),
    );
    const stats = await allStats(cluster);
    out(
      `NATS subscriptions per server with ${total} nodes: ${
        cluster.servers.map((s, i) => `${s.name} ${base[i]!.subs} → ${stats[i]!.subs}`).join(
          ", ",
        )
      }`,
    );
    // Activate `actors` actors over the nodes, then asks at random.
    const ids = Array.from({ length: actors }, (_, i) => `s${i}`);
    const where = new Array<string>(actors).fill("");
    const a0 = performance.now();
    const errors = await activateAll(client, ids, where);
    const spread = new Set(where).size;
    out(
      `activation of ${f(actors)} actors over ${total} nodes: ${
        f(actors / ((performance.now() - a0) / 1000))
      }/s; ${spread} nodes hold some; errors retried: ${JSON.stringify(errors)}`,
    );
    const refs = ids.map((id) => client.ref(Scale, id));
    let k = 0;
    const ask = () => refs[k = (k + 7919) % actors]!.ask("where");
    for (let i = 0; i < 2000; i++) await ask();
    // The same asks, and raw request/reply to the processes' responders (a queue group).
    const raw = await connect({ servers: cluster.urls[0]!, noAsyncTraces: true });
    try {
      const mux = rawMux(raw, `${prefix}.raw`, new Uint8Array(16).fill(7));
      for (let i = 0; i < 2000; i++) await mux();
      const meter = new CpuMeter(["self", ...hosts.map((h) => h.pid)]);
      const measure = async (fn: () => Promise<unknown>) => {
        let count = 0;
        meter.start();
        const rate = await throughput(async () => {
          await fn();
          count++;
        }, seconds / 2);
        const used = meter.stop();
        return {
          rate,
          client: used[0]! / count,
          hosts: used.slice(1).reduce((a, b) => a + b) / count,
        };
      };
      const rounds: { ask: number[][]; mux: number[][] } = { ask: [], mux: [] };
      for (let round = 0; round < 3; round++) {
        for (const [name, fn] of [["mux", mux], ["ask", ask]] as const) {
          const m = await measure(fn);
          rounds[name].push([m.rate, m.client, m.hosts]);
        }
      }
      const med = (name: "ask" | "mux", j: number) => quantile(rounds[name].map((r) => r[j]!), 0.5);
      out(
        `asks over them, 64 in flight: ${f(med("ask", 0))}/s vs raw mux to the ${procs} processes ${
          f(med("mux", 0))
        }/s → ratio ${f(med("ask", 0) / med("mux", 0))}; CPU µs per request: client ${
          f(med("ask", 1))
        } vs ${f(med("mux", 1))}, host processes ${f(med("ask", 2))} vs ${
          f(med("mux", 2))
        } (routes decided over ${total} members)`,
      );
    } finally {
      await raw.close();
    }
    // kill -9 of one process: `per` nodes die at once.
    const victim = hosts[procs - 1]!;
    const dead = new Set(victim.info.nodes as string[]);
    const held = ids.filter((_, i) => dead.has(where[i]!));
    victim.kill("SIGKILL");
    const killedAt = performance.now();
    await victim.exited;
    const r = await untilAnswered(client, held, dead, killedAt, leaseTtl * 5 + 60_000);
    out(
      `kill -9 of a process with ${dead.size} nodes holding ${
        f(held.length)
      } actors: first answered elsewhere after ${f(quantile(r.times, 0))} ms, p50 ${
        f(quantile(r.times, 0.5))
      } ms, all ${f(r.times.length)} after ${f(Math.max(...r.times))} ms (leaseTtl + 2 s = ${
        leaseTtl + 2000
      } ms); errors retried: ${JSON.stringify(r.errors)}; answers from dead nodes: ${r.wrong}`,
    );
    for (const [what, n] of Object.entries(r.byMessage)) out(`  ${n}× ${what}`);
    return lines;
  } finally {
    await client.close().catch(() => {});
    await Promise.all(hosts.map((h) => h.stop()));
  }
}

if (import.meta.main) {
  const load = loadAverage();
  console.log(
    `Routing at scale — ${
      new Date().toISOString()
    } — ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, load average ${
      load.join(" ")
    }`,
  );
  const dir = await Deno.makeTempDir({ prefix: "troupe-scale-" });
  try {
    await using cluster = await startNatsCluster({ servers: 3, websocket: false });
    const empty = await allStats(cluster);
    console.log(
      `empty cluster: subscriptions ${empty.map((s) => s.subs).join(" / ")}, memory ${
        empty.map((s) => f(s.mem / 2 ** 20, 1)).join(" / ")
      } MiB`,
    );
    if (!args.has("skip-cluster")) {
      console.log("\n1. 3-server cluster, host processes, one shared libSQL journal");
      await benchCluster(cluster, dir);
    }
    if (!args.has("skip-sim")) {
      console.log("\n2a. deciding a route per ask (in-process mesh, real membership)");
      await benchDecide();
      console.log("\n2b. many nodes on the same cluster");
      await benchManyNodes(cluster, dir);
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    console.log(`load average at the end: ${loadAverage().join(" ")}`);
  }
}
