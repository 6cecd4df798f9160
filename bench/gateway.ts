/**
 * The HTTP gateway against a bare Hono route, measured from outside the server's process with
 * `wrk` (Debian's package): the server is a child process (`deno run -A bench/gateway.ts
 * --serve`) with an in-process actor (no events, no auth) behind two routes on one port:
 *
 * - `POST /api/account/{id}/deposit` through `gateway()` with its limits switched on (rates
 *   per address so high they never refuse, connection and stream caps, body timeout);
 * - `POST /bare/{id}/deposit`, a bare Hono route doing `c.req.json()` → `ref.ask()` →
 *   `c.json()`.
 *
 * `wrk -t1 -c<n> -d<s>` posts a 1-byte JSON body (`1`) to each in turn (A B, B A, …), after a
 * warm-up, several rounds, and prints each round and the median ratio; at 32 and at 1
 * connection. Run alone, on a quiet machine: `deno run -A bench/gateway.ts [rounds] [seconds]`.
 * `BENCH_CPU_PROF=<dir>` runs the server with `--cpu-prof` into that directory;
 * `BENCH_BROWSER_HEADERS=1` sends a browser's headers (16 instead of wrk's 3).
 *
 * @module
 */
import { Hono } from "hono";
import { createSystem, defineActor } from "../mod.ts";
import { gateway, type GatewayLimits } from "../adapters/hono/mod.ts";

/** The actor behind every route of the gateway benchmarks (no events, no auth). */
export const Account = defineActor({
  name: "account",
  initialState: () => ({ balance: 0 }),
  handlers: {
    deposit(ctx, amount: number) {
      ctx.state = { balance: ctx.state.balance + amount };
      return ctx.state.balance;
    },
  },
});

/** The gateway's limits in the benchmarks: every one switched on, none refusing. */
export const LIMITS: GatewayLimits = {
  perIp: { rate: 1e9, burst: 1e9 }, // switched on, never refusing
  maxConnections: 10_000,
  maxStreams: 1_000,
  maxStreamsPerCaller: 16,
  bodyTimeout: 10_000,
  maxBody: 1 << 20,
};

/**
 * Serves `app` on a loopback port, prints `READY <port>` (what {@link startServer} waits for),
 * and returns once SIGTERM stopped the server.
 */
export async function listen(app: Hono): Promise<void> {
  const stop = new AbortController();
  Deno.addSignalListener("SIGTERM", () => stop.abort());
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: stop.signal,
    onListen: ({ port }) => console.log(`READY ${port}`),
  }, app.fetch);
  await server.finished;
}

/** The server: both routes on one port; prints `READY <port>`. */
async function serve(): Promise<void> {
  const system = await createSystem({ actors: [Account], logger: "error" });
  const app = new Hono();
  app.post("/bare/:id/deposit", async (c) => {
    const amount = await c.req.json();
    return c.json(await system.ref(Account, c.req.param("id")).ask("deposit", amount));
  });
  app.route(
    "/api",
    gateway(system, { expose: [Account], limits: LIMITS }),
  );
  await listen(app);
  await system.close();
}

/** One figure: the gateway and the bare route, each round, and the median ratios. */
export interface GatewayResult {
  connections: number;
  /** Requests/s through the gateway, per round. */
  gateway: number[];
  /** Requests/s of the bare route, per round. */
  bare: number[];
  /** Median gateway / median bare requests/s. */
  ratio: number;
  /** The server's CPU time per request (user + system), µs: gateway, per round. */
  gatewayCpu: number[];
  /** The same for the bare route. */
  bareCpu: number[];
  /** Median bare / median gateway CPU per request: the ratio when the server is CPU-bound. */
  cpuRatio: number;
}

/**
 * The other headers a browser's `fetch()` of a JSON API sends (Chromium's), as wrk script lines:
 * with `BENCH_BROWSER_HEADERS=1` each request carries them (16 headers in all instead of wrk's 3).
 */
export function browserHeadersLua(): string {
  return Object.entries({
    "Connection": "keep-alive",
    "sec-ch-ua": '"Chromium";v="120", "Not?A_Brand";v="8"',
    "sec-ch-ua-mobile": "?0",
    "User-Agent":
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "sec-ch-ua-platform": '"Linux"',
    "Accept": "*/*",
    "Origin": "http://127.0.0.1",
    "Sec-Fetch-Site": "same-origin",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Dest": "empty",
    "Referer": "http://127.0.0.1/app/",
    "Accept-Encoding": "gzip, deflate, br",
    "Accept-Language": "en-US,en;q=0.9",
  }).map(([k, v]) => `wrk.headers["${k}"] = ${JSON.stringify(v)}\n`).join("");
}

/** User + system CPU seconds of a process so far (Linux `/proc/<pid>/stat`). */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks
}

/** The median of `xs`. */
export const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A `wrk -t1` run against `url` with `script`: requests/s and requests made; errors throw. */
export async function wrk(
  url: string,
  connections: number,
  seconds: number,
  script: string,
): Promise<{ rps: number; requests: number }> {
  const out = await new Deno.Command("wrk", {
    args: ["-t1", `-c${connections}`, `-d${seconds}s`, "-s", script, url],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (!out.success || !rps) {
    throw new Error(`wrk failed: ${text}${new TextDecoder().decode(out.stderr)}`);
  }
  if (/Non-2xx/.test(text)) throw new Error(`wrk saw errors against ${url}:\n${text}`);
  const requests = /(\d+) requests in/.exec(text);
  return { rps: Number(rps[1]), requests: Number(requests?.[1] ?? 0) };
}

/**
 * Writes the wrk script that posts a 1-byte JSON body (`1`), with a browser's headers too when
 * `browser`, into a new temporary directory (remove `dir` afterwards).
 */
export async function postScript(browser: boolean): Promise<{ script: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "troupe-bench-gw-" });
  const script = `${dir}/post.lua`;
  await Deno.writeTextFile(
    script,
    'wrk.method = "POST"\nwrk.body = "1"\nwrk.headers["Content-Type"] = "application/json"\n' +
      (browser ? browserHeadersLua() : ""),
  );
  return { script, dir };
}

/**
 * Runs `deno run -A [flags] <module> --serve [args]` and waits for its `READY <port>` line; stop
 * it with `child.kill("SIGTERM")` and `await child.status`.
 */
export async function startServer(
  module: string,
  flags: string[],
  args: string[],
): Promise<{ child: Deno.ChildProcess; port: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...flags, module, "--serve", ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!/READY \d+/.test(text)) {
      const { done, value } = await lines.read();
      if (done) throw new Error("The server ended before it was ready");
      text += value;
    }
    lines.releaseLock();
    child.stdout.cancel().catch(() => {});
    return { child, port: /READY (\d+)/.exec(text)![1]! };
  } catch (err) {
    child.kill("SIGTERM");
    await child.status;
    throw err;
  }
}

/** A wrk run with the server's CPU time per request, µs. */
async function measure(pid: number, url: string, connections: number, s: number, script: string) {
  const before = cpuSeconds(pid);
  const { rps, requests } = await wrk(url, connections, s, script);
  return { rps, cpu: (cpuSeconds(pid) - before) * 1e6 / requests };
}

/** Runs the server in a child process and measures both routes with wrk. */
export async function benchGateway(rounds = 5, seconds = 5): Promise<GatewayResult[]> {
  const { script, dir } = await postScript(Deno.env.get("BENCH_BROWSER_HEADERS") !== undefined);
  const prof = Deno.env.get("BENCH_CPU_PROF");
  const { child, port } = await startServer(
    new URL(import.meta.url).pathname,
    prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : [],
    [],
  );
  try {
    const gw = `http://127.0.0.1:${port}/api/account/a/deposit`;
    const bare = `http://127.0.0.1:${port}/bare/a/deposit`;
    const out: GatewayResult[] = [];
    for (const connections of [32, 1]) {
      await wrk(gw, connections, 3, script); // warm-up, both
      await wrk(bare, connections, 3, script);
      const g: number[] = [];
      const b: number[] = [];
      const gc: number[] = [];
      const bc: number[] = [];
      for (let i = 0; i < rounds; i++) {
        // A B, then B A: a trend of the machine's load does not favour one route
        const early = i % 2 === 0
          ? await measure(child.pid, gw, connections, seconds, script)
          : undefined;
        const other = await measure(child.pid, bare, connections, seconds, script);
        const one = early ?? await measure(child.pid, gw, connections, seconds, script);
        g.push(one.rps);
        gc.push(one.cpu);
        b.push(other.rps);
        bc.push(other.cpu);
      }
      out.push({
        connections,
        gateway: g,
        bare: b,
        ratio: median(g) / median(b),
        gatewayCpu: gc,
        bareCpu: bc,
        cpuRatio: median(bc) / median(gc),
      });
    }
    return out;
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  if (Deno.args[0] === "--serve") {
    await serve();
  } else {
    const rounds = Number(Deno.args[0] ?? 5);
    const seconds = Number(Deno.args[1] ?? 5);
    const k = (n: number) => `${(n / 1000).toFixed(1)}k`;
    console.log(
      `gateway vs bare Hono route, wrk from outside the server — ${new Date().toISOString()}, ` +
        `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ` +
        `load ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}`,
    );
    const us = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(" ");
    for (const r of await benchGateway(rounds, seconds)) {
      console.log(
        `  ${String(r.connections).padStart(2)} connections: gateway ${
          r.gateway.map(k).join(" ")
        }` +
          ` req/s; bare ${r.bare.map(k).join(" ")} req/s → ratio of medians ${r.ratio.toFixed(2)}` +
          ` (per round ${r.gateway.map((g, i) => (g / r.bare[i]!).toFixed(2)).join(" ")})`,
      );
      console.log(
        `      server CPU per request: gateway ${us(r.gatewayCpu)} µs; bare ${us(r.bareCpu)} µs` +
          ` → ratio of medians ${r.cpuRatio.toFixed(2)}`,
      );
    }
  }
}
