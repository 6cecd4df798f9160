/**
 * A/B rounds of the gateway's per-request cost (issue 14, item 13): one server process with
 * several routes on one port, `wrk -c<n>` against each in turn (A B C, C B A, …), many short
 * rounds, and per route the medians of the server's user and system CPU per request, context
 * switches, CPU per thread, and the median of each round's ratio to the bare route. Routes
 * (`GW_ROUTES`, comma-separated, default `api,base,bare,mbare`):
 *
 * - `api`: `gateway()` of this checkout with the limits of `bench/gateway.ts`, at `/api`;
 * - `base`: another gateway at `/base`, imported from `GW_BASE` (default
 *   `../adapters/_hono_base/mod.ts`): a copy of `adapters/hono/` from another commit, inside the
 *   checkout so that its imports resolve, e.g. `mkdir adapters/_hono_base && git archive main
 *   adapters/hono | tar -x --strip-components=2 -C adapters/_hono_base` (delete it afterwards:
 *   the checks would read it);
 * - `bare`: `c.req.json()` → `ref.ask()` → `c.json()` on `/bare/:id/deposit`;
 * - `mbare`: the same route in a sub-app mounted with `app.route("/mb", …)`;
 * - `v:<flags>`: the bare route plus one piece of the gateway's work (see `serve`).
 *
 * Also: `GW_HEADERS=browser` (a browser's 16 headers), `GW_PERF=1` (syscalls per request from
 * `perf stat`), `GW_ROUNDS=1` (every round's figures), `GW_V8=<flags>` (the server's V8 flags),
 * `GW_PROF=cpu|alloc` with `GW_PROF_DIR` (a V8 profile of each route's measured span, read with
 * `bench/_prof_top.ts <file> <requests>`).
 *
 * `deno run -A bench/_gateway_ab.ts [rounds] [seconds] [connections]`. Not part of the suite.
 *
 * @module
 */
import { Hono } from "hono";
import { createSystem, type System } from "../mod.ts";
import { gateway } from "../adapters/hono/mod.ts";
import { Account, LIMITS, listen, median, postScript, startServer, wrk } from "./gateway.ts";
import {
  startAllocProfile,
  startCpuProfile,
  stopAllocProfile,
  stopCpuProfile,
} from "./_alloc_prof.ts";

const ALL = ["api", "base", "bare", "mbare"];

async function serve(routes: string[]): Promise<void> {
  const system: System = await createSystem({ actors: [Account], logger: "error" });
  const app = new Hono();
  if (routes.includes("bare")) {
    app.post("/bare/:id/deposit", async (c) => {
      const amount = await c.req.json();
      return c.json(await system.ref(Account, c.req.param("id")).ask("deposit", amount));
    });
  }
  if (routes.includes("mbare")) {
    const sub = new Hono();
    sub.post("/:id/deposit", async (c) => {
      const amount = await c.req.json();
      return c.json(await system.ref(Account, c.req.param("id")).ask("deposit", amount));
    });
    app.route("/mb", sub);
  }
  // variants of the bare route with one piece of the gateway's work added, to price it alone:
  // `v:<flags>`, flags h0 (look at req.headers), h (and read the gateway's six), a (client
  // address and a bucket), j (req.json() instead of c.req.json())
  const buckets = new Map<string, { tokens: number; at: number }>();
  app.post("/v/:flags/:id/deposit", async (c) => {
    const flags = c.req.param("flags");
    const req = c.req.raw;
    if (flags.includes("h0")) req.headers;
    else if (flags.includes("h")) {
      const h = req.headers;
      h.has("content-length");
      h.get("authorization");
      h.get("content-length");
      h.get("content-type");
      h.get("accept");
      h.get("idempotency-key");
      h.get("prefer");
    }
    if (flags.includes("a")) {
      const addr = (c.env as Deno.ServeHandlerInfo<Deno.NetAddr>).remoteAddr.hostname;
      const now = Date.now();
      let b = buckets.get(addr);
      if (b === undefined) buckets.set(addr, b = { tokens: 1e9, at: now });
      b.tokens = Math.min(1e9, b.tokens + (now - b.at));
      b.at = now;
    }
    const amount = flags.includes("j") ? await req.json() : await c.req.json();
    return c.json(await system.ref(Account, c.req.param("id")).ask("deposit", amount));
  });
  if (routes.includes("api")) {
    app.route("/api", gateway(system, { expose: [Account], limits: LIMITS }));
  }
  if (routes.includes("base")) {
    const base = Deno.env.get("GW_BASE") ?? "../adapters/_hono_base/mod.ts";
    const mod = await import(base);
    app.route("/base", mod.gateway(system, { expose: [Account], limits: LIMITS }));
  }
  // profiling of a span, from the driver: `/_prof/cpu`, `/_prof/alloc`, `/_prof/stop?to=<file>`
  let stopProfile: ((to: string) => Promise<void>) | undefined;
  app.get("/_prof/:kind", async (c) => {
    const kind = c.req.param("kind");
    if (kind === "cpu") (await startCpuProfile(50), stopProfile = stopCpuProfile);
    else if (kind === "alloc") (await startAllocProfile(512), stopProfile = stopAllocProfile);
    else await stopProfile!(c.req.query("to")!);
    return c.text("ok");
  });
  await listen(app);
  await system.close();
}

interface Sample {
  /** µs per request by thread name. */
  threads: Map<string, number>;
  rps: number;
  user: number;
  sys: number;
  cs: number;
  /** Syscalls per request (GW_PERF=1: `perf stat` on the server during the round). */
  sc?: number;
}

/** `perf stat` of the server while `run` runs: syscalls entered. */
async function perfStat<T>(pid: number, run: () => Promise<T>): Promise<[T, number]> {
  const perf = new Deno.Command("perf", {
    args: ["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", String(pid)],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  await new Promise((r) => setTimeout(r, 100));
  const out = await run();
  perf.kill("SIGINT");
  const text = new TextDecoder().decode((await perf.output()).stderr);
  return [out, Number(/^(\d+),/m.exec(text)?.[1] ?? NaN)];
}

/** CPU seconds per thread name (`/proc/<pid>/task/<tid>/stat`), summed. */
function threads(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
      const name = text.slice(text.indexOf("(") + 1, text.lastIndexOf(")")).replace(/\d+$/, "");
      const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
      out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
    } catch { /* a thread that ended */ }
  }
  return out;
}

function stat(pid: number): { user: number; sys: number; cs: number } {
  const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  let cs = 0;
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const s = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/status`);
      cs += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0);
      cs += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0);
    } catch { /* a thread that ended */ }
  }
  return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100, cs };
}

async function main() {
  const rounds = Number(Deno.args[0] ?? 10);
  const seconds = Number(Deno.args[1] ?? 2);
  const conns = Number(Deno.args[2] ?? 32);
  const routes = (Deno.env.get("GW_ROUTES") ?? ALL.join(",")).split(",");
  const { script, dir } = await postScript(Deno.env.get("GW_HEADERS") === "browser");
  const v8 = Deno.env.get("GW_V8");
  const { child, port } = await startServer(
    new URL(import.meta.url).pathname,
    v8 ? [`--v8-flags=${v8}`] : [],
    [routes.join(",")],
  );
  try {
    const url: Record<string, string> = {
      ...Object.fromEntries(
        routes.filter((r) => r.startsWith("v:")).map((
          r,
        ) => [r, `http://127.0.0.1:${port}/v/${r.slice(2)}/a/deposit`]),
      ),
      api: `http://127.0.0.1:${port}/api/account/a/deposit`,
      base: `http://127.0.0.1:${port}/base/account/a/deposit`,
      bare: `http://127.0.0.1:${port}/bare/a/deposit`,
      mbare: `http://127.0.0.1:${port}/mb/a/deposit`,
    };
    for (const r of routes) await wrk(url[r]!, conns, 2, script);
    // GW_PROF "cpu" or "alloc": one profile per route into GW_PROF_DIR
    const prof = Deno.env.get("GW_PROF");
    if (prof) {
      const to = Deno.env.get("GW_PROF_DIR") ?? ".";
      const base = `http://127.0.0.1:${port}/_prof`;
      for (const r of routes) {
        await wrk(url[r]!, conns, 2, script);
        await (await fetch(`${base}/${prof}`)).text();
        const { requests } = await wrk(url[r]!, conns, seconds, script);
        const file = `${to}/${r}.${prof === "cpu" ? "cpuprofile" : "heapprofile"}`;
        await (await fetch(`${base}/stop?to=${file}`)).text();
        console.log(`${r}: ${requests} requests → ${file}`);
      }
      return;
    }
    const samples = new Map<string, Sample[]>(routes.map((r) => [r, []]));
    console.log(
      `${new Date().toISOString()} load ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}`,
    );
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? routes : [...routes].reverse();
      for (const r of order) {
        const ta = threads(child.pid);
        const a = stat(child.pid);
        const [{ rps, requests }, calls] = Deno.env.get("GW_PERF")
          ? await perfStat(child.pid, () => wrk(url[r]!, conns, seconds, script))
          : [await wrk(url[r]!, conns, seconds, script), NaN];
        const b = stat(child.pid);
        const tb = threads(child.pid);
        samples.get(r)!.push({
          threads: new Map(
            [...tb].map(([k, v]) => [k, (v - (ta.get(k) ?? 0)) * 1e6 / requests]),
          ),
          rps,
          user: (b.user - a.user) * 1e6 / requests,
          sys: (b.sys - a.sys) * 1e6 / requests,
          cs: (b.cs - a.cs) / requests,
          sc: calls / requests,
        });
      }
    }
    const ref = samples.get(routes.includes("bare") ? "bare" : routes[0]!)!;
    for (const r of routes) {
      const s = samples.get(r)!;
      const cpu = s.map((x) => x.user + x.sys);
      const ratios = s.map((x, i) => (x.user + x.sys) / (ref[i]!.user + ref[i]!.sys));
      console.log(
        `${r.padEnd(6)} rps ${(median(s.map((x) => x.rps)) / 1000).toFixed(1)}k  cpu ${
          median(cpu).toFixed(1)
        } µs (user ${median(s.map((x) => x.user)).toFixed(1)}, sys ${
          median(s.map((x) => x.sys)).toFixed(1)
        })  cs/req ${median(s.map((x) => x.cs)).toFixed(3)}  sc/req ${
          median(s.map((x) => x.sc ?? NaN)).toFixed(2)
        }  cpu/ref per round median ${median(ratios).toFixed(3)}  rps/ref ${
          median(s.map((x, i) => x.rps / ref[i]!.rps)).toFixed(3)
        }`,
      );
    }
    if (Deno.env.get("GW_ROUNDS")) {
      for (const r of routes) {
        const s = samples.get(r)!;
        console.log(
          `${r.padEnd(6)} per round: cpu ${
            s.map((x) => (x.user + x.sys).toFixed(0)).join(" ")
          } µs; rps ${s.map((x) => (x.rps / 1000).toFixed(0)).join(" ")}k`,
        );
      }
    }
    for (const r of routes) {
      const s = samples.get(r)!;
      const names = new Set(s.flatMap((x) => [...x.threads.keys()]));
      console.log(
        `${r.padEnd(6)} threads: ${
          [...names].map((n) => `${n} ${median(s.map((x) => x.threads.get(n) ?? 0)).toFixed(1)}`)
            .join(", ")
        }`,
      );
    }
    console.log(`end load ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  if (Deno.args[0] === "--serve") await serve(Deno.args[1]!.split(","));
  else await main();
}
