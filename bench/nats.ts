/**
 * Cluster benchmarks on real nats-server processes, each against a raw baseline measured in
 * the same run:
 * (a) ask across processes vs a raw NATS request/reply with the same payload and client
 *     library (throughput with 64 in flight, p50 latency one at a time);
 * (b) the same asks over WebSocket vs TCP;
 * (c) cold activation on a remote node (p50, p99) vs a warm ask;
 * (d) directory join/leave lag and kill -9 failover time (p50 over several runs);
 * and, in the same run, Moleculer 0.14 against raw NATS from Node.js (`bench/moleculer/`).
 *
 * CPU per request: utime + stime of this process (the client), of the host process and of the
 * nats-server (`/proc/<pid>/stat`) over each measured phase, divided by the requests of the
 * phase. Unlike throughput, it is not skewed much by other load on the machine.
 *
 * @module
 */
import { createSystem, type System } from "../mod.ts";
import { msgpack } from "../spi.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { connect } from "@nats-io/transport-node";
import { wsconnect } from "@nats-io/nats-core";
import { BenchEcho, BenchWorker } from "./actors.ts";
import { CpuMeter, loadAverage, rawMux, throughput } from "./_proc.ts";

export { throughput };
import { benchMoleculer } from "./moleculer/run.ts";

const PAYLOAD = new Uint8Array(64).fill(7);
/** What users send: an object (encoded by Troupe on every ask), and raw bytes. */
const PAYLOADS: [string, unknown][] = [
  ["object", { user: "alice", amount: 42, note: "x".repeat(64) }],
  ["bytes", PAYLOAD],
];

interface Child {
  proc: Deno.ChildProcess;
  ready: Promise<number>;
  kill(signal?: Deno.Signal): void;
  stop(): Promise<void>;
}

export function spawnNode(
  env: Record<string, string>,
  script = new URL("./nats_node.ts", import.meta.url).pathname,
): Child {
  const started = performance.now();
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const ready = (async () => {
    const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("Node exited before it was ready");
      buf += value;
      if (buf.includes("READY")) {
        void (async () => {
          while (!(await reader.read()).done) { /* drain */ }
        })();
        return performance.now() - started;
      }
    }
  })();
  let stopped = false;
  return {
    proc,
    ready,
    kill: (signal = "SIGKILL") => {
      try {
        proc.kill(signal);
      } catch { /* gone */ }
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      try {
        proc.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          proc.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await proc.status;
      clearTimeout(t);
    },
  };
}

async function latencies(fn: () => Promise<unknown>, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

export const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
};

async function waitFor(cond: () => boolean, ms: number): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error("Timed out");
    await new Promise((r) => setTimeout(r, 1));
  }
  return performance.now() - t0;
}

let moleculerWhy = "";
let moleculerVersion = "0.14";

/** Runs all cluster benchmarks and prints the figures. */
export async function benchNats(
  options: { seconds?: number; runs?: number; leaseTtl?: number } = {},
): Promise<Record<string, number>> {
  const seconds = options.seconds ?? 3;
  const runs = options.runs ?? 10;
  const leaseTtl = options.leaseTtl ?? 2000;
  const results: Record<string, number> = {};
  await using cluster = await startNatsCluster({ servers: 1 });
  const prefix = "bench";
  // The nodes share one libSQL journal file: actor ownership is recorded there.
  const dir = await Deno.makeTempDir({ prefix: "troupe-bench-" });
  using _cleanup = { [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }) };
  const env = {
    TROUPE_JOURNAL: `file:${dir}/journal.db`,
    TROUPE_SERVERS: cluster.urls[0]!,
    TROUPE_RAW_SERVERS: `${cluster.urls[0]},${cluster.wsUrls[0]}`,
    TROUPE_PREFIX: prefix,
    TROUPE_NODE: "bench-host",
    TROUPE_LEASE_TTL: String(leaseTtl),
  };
  const host = spawnNode(env);
  await host.ready;
  const clients: System[] = [];
  try {
    // (a) TCP: our ask vs raw request/reply, same payload, same client library
    const tcp = await createSystem({
      mesh: natsMesh({ servers: cluster.urls[0]!, prefix, leaseTtl }),
    });
    clients.push(tcp);
    // The baseline at its fastest: no async stack traces (each request would build an Error),
    // and its payload encoded once, up front (Troupe encodes and decodes every message).
    const nc = await connect({ servers: cluster.urls[0]!, noAsyncTraces: true });
    for (const [name, payload] of PAYLOADS) {
      const bytes = payload instanceof Uint8Array ? payload : msgpack.encode(payload);
      // Two baselines: the client's own request(), and a hand-made one at the protocol's
      // fastest (one reply subscription, a map of pending requests, no timer per request):
      // the ratio is reported against the faster of the two.
      const clientRequest = () => nc.request("bench.raw", bytes, { timeout: 5000 });
      const muxRequest = rawMux(nc, "bench.raw", bytes);
      let raw: () => Promise<unknown> = clientRequest;
      const ref = tcp.ref(BenchEcho, `warm-${name}`);
      const ask = () => ref.ask("ping", payload as Uint8Array, { timeout: 5000 });
      await ask();
      for (let i = 0; i < 500; i++) await Promise.all([raw(), ask()]); // warm up both
      // Alternate the two, three rounds each, and keep each one's median: background load on
      // this 2-core machine then hits both alike.
      const workerRef = tcp.ref(BenchWorker);
      const work = () => workerRef.ask("ping", payload as Uint8Array, { timeout: 5000 });
      for (let i = 0; i < 500; i++) await work();
      const rawRuns: number[] = [];
      const askRuns: number[] = [];
      const workRuns: number[] = [];
      const muxRuns: number[] = [];
      // CPU µs per request of [client, host, nats-server], per phase and round.
      const meter = new CpuMeter(["self", host.proc.pid, cluster.servers[0]!.pid!]);
      const cpu: Record<string, number[][]> = { rawClient: [], rawMux: [], ask: [], worker: [] };
      // TCP segments sent per request of the same processes (socket writes: how well replies and
      // requests are batched).
      const writes: Record<string, number[][]> = { rawClient: [], rawMux: [], ask: [], worker: [] };
      const measured = async (phase: string, fn: () => Promise<unknown>) => {
        let count = 0;
        meter.start();
        const rate = await throughput(async () => {
          await fn();
          count++;
        }, seconds / 2);
        cpu[phase]!.push(meter.stop().map((c) => c / count));
        writes[phase]!.push(meter.writes().map((w) => w / count));
        return rate;
      };
      for (let round = 0; round < 3; round++) {
        rawRuns.push(await measured("rawClient", clientRequest));
        muxRuns.push(await measured("rawMux", muxRequest));
        askRuns.push(await measured("ask", ask));
        workRuns.push(await measured("worker", work));
      }
      const k = name === "bytes" ? "" : "Obj";
      results[`rawClientPerSec${k}`] = pct(rawRuns, 0.5);
      results[`rawMuxPerSec${k}`] = pct(muxRuns, 0.5);
      if (pct(muxRuns, 0.5) > pct(rawRuns, 0.5)) {
        rawRuns.splice(0, rawRuns.length, ...muxRuns);
        raw = muxRequest;
      }
      for (const [phase, rounds] of Object.entries(cpu)) {
        ["Client", "Host", "Server"].forEach((side, j) => {
          results[`cpu${side}_${phase}${k}`] = pct(rounds.map((r) => r[j]!), 0.5);
          results[`writes${side}_${phase}${k}`] = pct(writes[phase]!.map((r) => r[j]!), 0.5);
        });
      }
      results[`rawTcpPerSec${k}`] = pct(rawRuns, 0.5);
      results[`askTcpPerSec${k}`] = pct(askRuns, 0.5);
      results[`throughputRatio${k}`] = pct(askRuns, 0.5) / pct(rawRuns, 0.5);
      results[`workerTcpPerSec${k}`] = pct(workRuns, 0.5);
      results[`workerRatio${k}`] = pct(workRuns, 0.5) / pct(rawRuns, 0.5);
      const rawLat = await latencies(raw, 2000);
      const askLat = await latencies(ask, 2000);
      results[`rawP50Ms${k}`] = pct(rawLat, 0.5);
      results[`askP50Ms${k}`] = pct(askLat, 0.5);
      results[`latencyRatio${k}`] = pct(askLat, 0.5) / pct(rawLat, 0.5);
      const workLat = await latencies(work, 2000);
      results[`workerP50Ms${k}`] = pct(workLat, 0.5);
      results[`workerLatencyRatio${k}`] = pct(workLat, 0.5) / pct(rawLat, 0.5);
    }
    await nc.close();
    // Moleculer 0.14 from Node.js on the same nats-server, in the same run.
    if (!Deno.env.get("BENCH_SKIP_MOLECULER")) {
      const mol = await benchMoleculer({
        natsUrl: cluster.urls[0]!,
        serverPid: cluster.servers[0]!.pid!,
        seconds: seconds / 2,
      });
      if ("skipped" in mol) {
        results.moleculerSkipped = 1;
        moleculerWhy = mol.skipped;
      } else {
        moleculerVersion = mol.version;
        for (const [key, v] of Object.entries(mol.figures)) results[`mol_${key}`] = v;
      }
    }
    if (Deno.env.get("BENCH_ONLY_A")) return results;

    // (b) WebSocket vs TCP, same asks
    const ws = await createSystem({ mesh: natsMesh({ servers: cluster.wsUrls[0]!, prefix }) });
    clients.push(ws);
    const wsRef = ws.ref(BenchEcho, "warm");
    const wsAsk = () => wsRef.ask("ping", PAYLOAD, { timeout: 5000 });
    for (let i = 0; i < 200; i++) await wsAsk();
    results.askWsPerSec = await throughput(wsAsk, seconds);
    results.wsTcpRatio = results.askWsPerSec / results.askTcpPerSec!;
    const wnc = await wsconnect({ servers: cluster.wsUrls[0]! });
    results.rawWsPerSec = await throughput(
      () => wnc.request("bench.raw", PAYLOAD, { timeout: 5000 }),
      seconds,
    );
    await wnc.close();

    // (c) cold activation on the remote node vs a warm ask
    const cold: number[] = [];
    for (let i = 0; i < 300; i++) {
      const r = tcp.ref(BenchEcho, `cold-${i}-${crypto.randomUUID()}`);
      const t0 = performance.now();
      await r.ask("ping", PAYLOAD);
      cold.push(performance.now() - t0);
    }
    results.coldP50Ms = pct(cold, 0.5);
    results.coldP99Ms = pct(cold, 0.99);
    results.warmP50Ms = results.askP50Ms!;

    // (d) join/leave lag and kill -9 failover
    const joins: number[] = [];
    const leaves: number[] = [];
    const failovers: number[] = [];
    const locateErrors: string[] = [];
    for (let run = 0; run < runs * 2; run++) {
      if (Deno.env.get("BENCH_SKIP_D")) break;
      const name = `victim-${run}`;
      const victim = spawnNode({ ...env, TROUPE_NODE: name });
      await victim.ready;
      joins.push(await waitFor(() => tcp.directory.nodes().some((n) => n.id === name), 5000));
      if (run % 2 === 1) {
        // graceful leave
        const t0 = performance.now();
        const stopping = victim.stop();
        await waitFor(() => !tcp.directory.nodes().some((n) => n.id === name), 10_000);
        leaves.push(performance.now() - t0);
        await stopping;
        continue;
      }
      // kill -9 of the node hosting an actor: time until the actor answers from another node
      let id = "";
      for (let k = 0; k < 200 && !id; k++) {
        const candidate = `f-${run}-${k}`;
        await tcp.ref(BenchEcho, candidate).ask("ping", PAYLOAD);
        // locate() asks the actor's placement host; one killed in an earlier run and not yet
        // declared dead answers nothing (the call rejects with no_responders): count, go on.
        const at = await tcp.directory.locate(BenchEcho, candidate).catch((err) => {
          locateErrors.push(String(err).slice(0, 120));
          return undefined;
        });
        if (at === name) id = candidate;
      }
      victim.kill("SIGKILL");
      const t0 = performance.now();
      await tcp.ref(BenchEcho, id).ask("ping", PAYLOAD, {
        timeout: leaseTtl * 5,
        idempotencyKey: `failover-${run}`,
      });
      failovers.push(performance.now() - t0);
      await victim.stop();
    }
    results.joinLagP50Ms = pct(joins, 0.5);
    results.joinLagP99Ms = pct(joins, 0.99);
    results.leaveLagP50Ms = pct(leaves, 0.5);
    results.failoverP50Ms = pct(failovers, 0.5);
    results.failoverMaxMs = Math.max(...failovers);
    results.failoverRuns = failovers.length;
    results.leaseTtlMs = leaseTtl;
    results.locateErrors = locateErrors.length;
    if (locateErrors.length) {
      console.log(`directory.locate() failed ${locateErrors.length}×, first: ${locateErrors[0]}`);
    }
  } finally {
    for (const c of clients) await c.close();
    await host.stop();
  }
  return results;
}

/** The lines that report {@link benchNats}'s results, each figure next to its baseline. */
export function natsReport(r: Record<string, number>, indent = ""): string[] {
  const f = (n: number | undefined) =>
    n === undefined ? "-" : n >= 100 ? Math.round(n).toLocaleString("en") : n.toFixed(2);
  const cpuLine = (k: string) => {
    const c = (side: string, phase: string) => r[`cpu${side}_${phase}${k}`];
    const side = (name: string, s: string) =>
      `${name} ${f(c(s, "ask"))} (worker ${f(c(s, "worker"))}) vs ${f(c(s, "rawMux"))} mux / ${
        f(c(s, "rawClient"))
      } request()`;
    const total = (phase: string) =>
      ["Client", "Host", "Server"].reduce((a, s) => a + c(s, phase)!, 0);
    return `    CPU µs per request, actor ask (worker) vs raw: ${side("client", "Client")}; ${
      side("host", "Host")
    }; ${side("nats-server", "Server")}; all three: ask ${f(total("ask"))}, worker ${
      f(total("worker"))
    }, raw mux ${f(total("rawMux"))} → ratio ${f(total("ask") / total("rawMux"))} (worker ${
      f(total("worker") / total("rawMux"))
    })`;
  };
  const a = (k: string, what: string) => [
    `(a) ${what}: ask vs raw NATS request/reply, 64 in flight: ${f(r[`askTcpPerSec${k}`])}/s vs ${
      f(r[`rawTcpPerSec${k}`])
    }/s → ratio ${f(r[`throughputRatio${k}`])} (goal ≥ 0.95); raw baselines: client request() ${
      f(r[`rawClientPerSec${k}`])
    }/s (ratio ${f(r[`askTcpPerSec${k}`]! / r[`rawClientPerSec${k}`]!)}), hand-made mux ${
      f(r[`rawMuxPerSec${k}`])
    }/s (ratio ${f(r[`askTcpPerSec${k}`]! / r[`rawMuxPerSec${k}`]!)})`,
    `    p50 one at a time: ${f(r[`askP50Ms${k}`])} ms vs ${f(r[`rawP50Ms${k}`])} ms → ratio ${
      f(r[`latencyRatio${k}`])
    } (goal ≤ 1.1)`,
    `    stateless worker: ${f(r[`workerTcpPerSec${k}`])}/s → ratio ${
      f(r[`workerRatio${k}`])
    } (goal ≥ 0.95); p50 ${f(r[`workerP50Ms${k}`])} ms → ratio ${
      f(r[`workerLatencyRatio${k}`])
    } (goal ≤ 1.1)`,
    cpuLine(k),
    `    TCP segments sent per request, ask (worker) vs raw mux / request(): ${
      ["Client", "Host", "Server"].map((s) =>
        `${s.toLowerCase()} ${f(r[`writes${s}_ask${k}`])} (${f(r[`writes${s}_worker${k}`])}) vs ${
          f(r[`writes${s}_rawMux${k}`])
        } / ${f(r[`writes${s}_rawClient${k}`])}`
      ).join(", ")
    }`,
    r.moleculerSkipped
      ? `    Moleculer: not run (${moleculerWhy})`
      : r[`mol_molPerSec${k}`] === undefined
      ? `    Moleculer: not run (BENCH_SKIP_MOLECULER)`
      : `    Moleculer ${moleculerVersion} (Node.js, same nats-server): ${
        f(r[`mol_molPerSec${k}`])
      }/s vs raw nats v2 request() ${f(r[`mol_requestPerSec${k}`])}/s → ratio ${
        f(r[`mol_ratioRequest${k}`])
      }, vs hand-made mux ${f(r[`mol_muxPerSec${k}`])}/s → ratio ${
        f(r[`mol_ratioMux${k}`])
      }; CPU µs per request caller/responder/server: Moleculer ${
        ["Caller", "Responder", "Server"].map((s) => f(r[`mol_molCpu${s}${k}`])).join(" / ")
      }, raw mux ${
        ["Caller", "Responder", "Server"].map((s) => f(r[`mol_muxCpu${s}${k}`])).join(" / ")
      }, raw request() ${
        ["Caller", "Responder", "Server"].map((s) => f(r[`mol_requestCpu${s}${k}`])).join(" / ")
      }`,
  ];
  return [
    ...a("Obj", "object payload { user, amount, note: 64 chars }"),
    ...a("", "64-byte Uint8Array"),
    `(b) ask over WebSocket vs TCP: ${f(r.askWsPerSec)}/s vs ${f(r.askTcpPerSec)}/s → ratio ${
      f(r.wsTcpRatio)
    } (goal ≥ 0.7); raw request/reply on the runtime's own WebSocket ${f(r.rawWsPerSec)}/s`,
    `(c) cold activation on a remote node: p50 ${f(r.coldP50Ms)} ms, p99 ${
      f(r.coldP99Ms)
    } ms; warm ask p50 ${f(r.warmP50Ms)} ms`,
    `(d) join lag p50 ${f(r.joinLagP50Ms)} ms (p99 ${f(r.joinLagP99Ms)}), graceful leave p50 ${
      f(r.leaveLagP50Ms)
    } ms, kill -9 failover p50 ${f(r.failoverP50Ms)} ms (max ${
      f(r.failoverMaxMs)
    }) over ${r.failoverRuns} runs with leaseTtl ${r.leaseTtlMs} ms`,
  ].map((line) => indent + line);
}

if (import.meta.main) {
  console.log(
    `NATS cluster benchmarks (1 nats-server, node in another process) — ${
      new Date().toISOString()
    } — load average ${loadAverage().join(" ")}`,
  );
  for (const line of natsReport(await benchNats())) console.log(line);
  console.log(`load average at the end: ${loadAverage().join(" ")}`);
}
