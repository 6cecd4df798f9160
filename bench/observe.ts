/**
 * The cost of observability on the message path: remote asks (bench/nats.ts's (a): a host
 * node in another process, 64-byte payload, against raw NATS request/reply on the same
 * server, measured in the same client process) and in-process asks, for
 *
 * 1. `base`: the code before observability (a snapshot of `BENCH_BASE`, default the merge
 *    base with `main`), OpenTelemetry off;
 * 2. `off`: this checkout, OpenTelemetry off (`@opentelemetry/api` is a no-op);
 * 3. `on`: this checkout, OpenTelemetry on in both processes (`OTEL_DENO=true`), exporting
 *    OTLP/HTTP to a receiver in this process that discards what it gets;
 * 4. `1%`: the same, keeping one trace in a hundred (`parentbased_traceidratio`, 0.01).
 *
 * First, the hooks alone: their cost per message with OpenTelemetry off, in this process.
 *
 * Each run starts a fresh host and client; the configurations take turns, `BENCH_ROUNDS`
 * rounds (default 5), and each figure is the median of its runs. The figures to compare: the
 * CPU time per call (client and host processes, from /proc: other load on the machine barely
 * moves it) and the ask/raw ratio (background load hits the raw baseline alike).
 *
 * `deno run -A bench/observe.ts`
 *
 * @module
 */
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { NodeObserver } from "../src/observe/node.ts";
import { pct, spawnNode } from "./nats.ts";

const here = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const rounds = Number(Deno.env.get("BENCH_ROUNDS") ?? 5);
const seconds = Deno.env.get("BENCH_SECONDS") ?? "2";

async function git(...args: string[]): Promise<string> {
  const out = await new Deno.Command("git", { args, cwd: here, stdout: "piped" }).output();
  if (!out.success) throw new Error(`git ${args.join(" ")} failed`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** A snapshot of `commit` in a temporary directory, using this checkout's node_modules. */
export async function snapshot(commit: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: `troupe-base-${commit.slice(0, 8)}-` });
  const archive = new Deno.Command("git", { args: ["archive", commit], cwd: here, stdout: "piped" })
    .spawn();
  const tar = new Deno.Command("tar", { args: ["-x", "-C", dir], stdin: "piped" }).spawn();
  await archive.stdout.pipeTo(tar.stdin);
  if (!(await archive.status).success || !(await tar.status).success) {
    throw new Error(`Could not extract ${commit}`);
  }
  await Deno.symlink(await Deno.realPath(`${here}/node_modules`), `${dir}/node_modules`);
  return dir;
}

interface Result {
  rawPerSec: number;
  askPerSec: number;
  /** CPU µs per call, client and host processes together. */
  rawCpuUs: number;
  askCpuUs: number;
  rawP50Ms: number;
  askP50Ms: number;
  localPerSec: number;
  localCpuUs: number;
}

/** A receiver that takes OTLP/HTTP posts and drops them. */
function sink() {
  let posts = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.arrayBuffer();
    posts++;
    return Response.json({});
  });
  return {
    url: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    posts: () => posts,
    close: () => server.shutdown(),
  };
}

async function run(
  root: string,
  servers: string,
  otel: Record<string, string> | undefined,
  n: number,
): Promise<Result> {
  const prefix = `obs${n}`;
  const env = {
    TROUPE_SERVERS: servers,
    TROUPE_PREFIX: prefix,
    TROUPE_NODE: `host-${n}`,
    TROUPE_LEASE_TTL: "2000",
    ...(otel ?? {}),
  };
  const host = spawnNode(env, `${root}/bench/nats_node.ts`);
  try {
    await host.ready;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./observe_client.ts", import.meta.url).pathname],
      env: {
        ...env,
        BENCH_ROOT: root,
        BENCH_SECONDS: seconds,
        BENCH_HOST_PID: String(host.proc.pid),
      },
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const line = new TextDecoder().decode(out.stdout).split("\n").find((l) =>
      l.startsWith("RESULT ")
    );
    if (!line) throw new Error(`The client printed no result (exit ${out.code})`);
    return JSON.parse(line.slice(7));
  } finally {
    await host.stop();
  }
}

/**
 * What the message path's hooks cost per message with OpenTelemetry off (this process runs
 * without it): `observer.send` + `observer.sent` on the caller's side, `observer.turn` around a
 * synchronous turn, against calling the turn's body directly. Nanoseconds per message.
 */
function hookCost(): { sendNs: number; turnNs: number; directNs: number } {
  const obs = new NodeObserver("bench", () => []);
  const stats = obs.type("t");
  const init = { kind: "ask" as const, type: "t", id: "x", handler: "h" };
  const m = { kind: "ask" as const, handler: "h", failure: undefined };
  const self = { n: 0 };
  function body(this: typeof self) {
    this.n++;
    return undefined;
  }
  const ns = (fn: () => void) => {
    const runs: number[] = [];
    for (let r = 0; r < 5; r++) {
      const n = 1_000_000;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) fn();
      runs.push(((performance.now() - t0) * 1e6) / n);
    }
    return pct(runs, 0.5);
  };
  const directNs = ns(() => body.call(self));
  const turnNs = ns(() => obs.turn(stats, "x", m, body, self));
  const sendNs = ns(() => obs.sent(obs.send(init), init, undefined));
  return { sendNs, turnNs, directNs };
}

if (import.meta.main) {
  const hooks = hookCost();
  console.log(
    `Hooks with OpenTelemetry off: send+sent ${hooks.sendNs.toFixed(1)} ns, turn ${
      hooks.turnNs.toFixed(1)
    } ns (its body alone ${hooks.directNs.toFixed(1)} ns) per message`,
  );
  const base = Deno.env.get("BENCH_BASE") ?? await git("merge-base", "HEAD", "main");
  const baseDir = await snapshot(base);
  await using cluster = await startNatsCluster({ servers: 1, websocket: false });
  const receiver = sink();
  const otel = {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: "bench",
  };
  const sampled = {
    ...otel,
    OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
    OTEL_TRACES_SAMPLER_ARG: "0.01",
  };
  const configs = [
    { name: "base", root: baseDir, otel: undefined },
    { name: "off", root: here, otel: undefined },
    { name: "on", root: here, otel },
    { name: "1%", root: here, otel: sampled },
  ];
  const results = new Map<string, Result[]>(configs.map((c) => [c.name, []]));
  console.log(
    `Observability cost — ${new Date().toISOString()} — ${Deno.build.os} ${Deno.build.arch}, ` +
      `${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}; base ${
        base.slice(0, 8)
      }, head ${(await git("rev-parse", "HEAD")).slice(0, 8)}; ${rounds} rounds`,
  );
  let n = 0;
  try {
    for (let round = 0; round < rounds; round++) {
      // Take turns in a different order each round.
      const order = configs.map((_, i) => configs[(i + round) % configs.length]!);
      for (const c of order) {
        const r = await run(c.root, cluster.urls[0]!, c.otel, n++);
        results.get(c.name)!.push(r);
        console.log(
          `  round ${round + 1} ${c.name.padEnd(4)}: ask ${Math.round(r.askPerSec)}/s vs raw ${
            Math.round(r.rawPerSec)
          }/s (${(r.askPerSec / r.rawPerSec).toFixed(3)}), p50 ${r.askP50Ms.toFixed(3)} vs ${
            r.rawP50Ms.toFixed(3)
          } ms, cpu ${r.askCpuUs.toFixed(1)} vs ${r.rawCpuUs.toFixed(1)} µs, local ${
            Math.round(r.localPerSec)
          }/s ${r.localCpuUs.toFixed(2)} µs`,
        );
      }
    }
  } finally {
    await receiver.close();
    await Deno.remove(baseDir, { recursive: true });
  }
  const median = (name: string, f: (r: Result) => number) => pct(results.get(name)!.map(f), 0.5);
  const summary = Object.fromEntries(configs.map((c) => [c.name, {
    throughputRatio: median(c.name, (r) => r.askPerSec / r.rawPerSec),
    latencyRatio: median(c.name, (r) => r.askP50Ms / r.rawP50Ms),
    askPerSec: median(c.name, (r) => r.askPerSec),
    askP50Ms: median(c.name, (r) => r.askP50Ms),
    localPerSec: median(c.name, (r) => r.localPerSec),
    askCpuUs: median(c.name, (r) => r.askCpuUs),
    rawCpuUs: median(c.name, (r) => r.rawCpuUs),
    localCpuUs: median(c.name, (r) => r.localCpuUs),
  }]));
  const rel = (a: number, b: number) => `${((a / b - 1) * 100).toFixed(1)} %`;
  console.log("\nMedians (ask/raw ratios; local = in-process asks one at a time):");
  for (const [name, s] of Object.entries(summary)) {
    console.log(
      `  ${name.padEnd(4)}: throughput ratio ${s.throughputRatio.toFixed(3)}, p50 ratio ${
        s.latencyRatio.toFixed(3)
      }, ask ${Math.round(s.askPerSec)}/s, p50 ${s.askP50Ms.toFixed(3)} ms, CPU per ask ${
        s.askCpuUs.toFixed(1)
      } µs (raw ${s.rawCpuUs.toFixed(1)}), local ${Math.round(s.localPerSec)}/s (${
        s.localCpuUs.toFixed(2)
      } µs CPU)`,
    );
  }
  const b = summary.base!, off = summary.off!, on = summary.on!, some = summary["1%"]!;
  console.log(
    `\nOff vs base: remote throughput ${rel(off.throughputRatio, b.throughputRatio)}, p50 ${
      rel(off.latencyRatio, b.latencyRatio)
    }, local ${rel(off.localPerSec, b.localPerSec)}; CPU per remote ask ${
      rel(off.askCpuUs, b.askCpuUs)
    }, per local ask ${rel(off.localCpuUs, b.localCpuUs)}`,
  );
  console.log(
    `On vs off:   remote throughput ${rel(on.throughputRatio, off.throughputRatio)}, p50 ${
      rel(on.latencyRatio, off.latencyRatio)
    }, local ${rel(on.localPerSec, off.localPerSec)}; CPU per remote ask ${
      rel(on.askCpuUs, off.askCpuUs)
    }, per local ask ${rel(on.localCpuUs, off.localCpuUs)}; ${receiver.posts()} OTLP posts`,
  );
  console.log(
    `1 % vs off:  remote throughput ${rel(some.throughputRatio, off.throughputRatio)}, p50 ${
      rel(some.latencyRatio, off.latencyRatio)
    }; CPU per remote ask ${rel(some.askCpuUs, off.askCpuUs)}, per local ask ${
      rel(some.localCpuUs, off.localCpuUs)
    }`,
  );
}
