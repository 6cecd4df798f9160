/**
 * Helpers of the benchmarks that spawn processes: CPU time of a process (utime + stime from
 * `/proc/<pid>/stat`), a child Deno program with V8 flags and a line protocol on stdin/stdout,
 * and monitoring reads of a nats-server (`/subsz`, `/varz`).
 *
 * @module
 */

let tick: number | undefined;

/** Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux). */
function clockTick(): number {
  if (tick !== undefined) return tick;
  try {
    const out = new Deno.Command("getconf", { args: ["CLK_TCK"] }).outputSync();
    tick = Number(new TextDecoder().decode(out.stdout).trim()) || 100;
  } catch {
    tick = 100;
  }
  return tick;
}

/**
 * CPU time used so far by process `pid` ("self" for this one), all threads, user + system, in
 * µs (resolution: one clock tick, 10 ms). NaN when the process is gone.
 */
export function cpuMicros(pid: number | "self" = "self"): number {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return NaN;
  }
  // The command name (field 2) is in parentheses and may hold spaces: fields count from after it.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return ((utime + stime) * 1e6) / clockTick();
}

/**
 * CPU time used so far by each thread of this process, in µs (user + system, one clock tick's
 * resolution), by kind: the main thread (`main`), V8's helper threads (`v8`: concurrent GC and
 * compilation), web workers (`workers`: the libSQL journal's database threads), the rest
 * (`other`: Deno's runtime threads). Linux only.
 *
 * @example
 * ```ts
 * import { threadCpuMicros } from "./_proc.ts";
 * const before = threadCpuMicros();
 * // ... work ...
 * const after = threadCpuMicros();
 * console.log(after.main - before.main, "µs on the main thread");
 * ```
 */
export function threadCpuMicros(): { main: number; v8: number; workers: number; other: number } {
  const out = { main: 0, v8: 0, workers: 0, other: 0 };
  for (const e of Deno.readDirSync("/proc/self/task")) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/self/task/${e.name}/stat`);
    } catch {
      continue; // the thread ended
    }
    const name = text.slice(text.indexOf("(") + 1, text.lastIndexOf(")"));
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const us = ((Number(rest[11]) + Number(rest[12])) * 1e6) / clockTick();
    if (Number(e.name) === Deno.pid) out.main += us;
    else if (name.startsWith("V8 ")) out.v8 += us;
    else if (name.startsWith("worker-")) out.workers += us;
    else out.other += us;
  }
  return out;
}

/**
 * TCP data segments sent so far by each process, summed over its established sockets
 * (`ss -tinp`: `data_segs_out`). On loopback with TCP_NODELAY every socket write leaves as at
 * least one segment, so per request this counts how well writes are batched. Sockets closed
 * in between are not counted.
 */
export function segmentsOut(): Map<number, number> {
  const out = new Map<number, number>();
  try {
    const r = new Deno.Command("ss", { args: ["-tinpH", "state", "established"] }).outputSync();
    const lines = new TextDecoder().decode(r.stdout).split("\n");
    let pid: number | undefined;
    for (const line of lines) {
      const owner = line.match(/pid=(\d+)/);
      if (owner) pid = Number(owner[1]);
      else if (!/^\s/.test(line)) pid = undefined;
      const segs = line.match(/data_segs_out:(\d+)/);
      if (segs && pid !== undefined) out.set(pid, (out.get(pid) ?? 0) + Number(segs[1]));
    }
  } catch {
    // no `ss`: nothing counted
  }
  return out;
}

/**
 * CPU µs used by each of `pids` between `start()` and `stop()`, and the TCP segments each sent
 * over the same span (`writes()` after `stop()`, see {@link segmentsOut}).
 */
export class CpuMeter {
  readonly #pids: number[];
  #t0: number[] = [];
  #segs0 = new Map<number, number>();
  #writes: number[] = [];

  constructor(pids: (number | "self")[]) {
    this.#pids = pids.map((p) => p === "self" ? Deno.pid : p);
  }

  start(): void {
    this.#segs0 = segmentsOut();
    this.#t0 = this.#pids.map((p) => cpuMicros(p));
  }

  /** µs of CPU per process since `start()`, in the order of the pids. */
  stop(): number[] {
    const cpu = this.#pids.map((p, i) => cpuMicros(p) - this.#t0[i]!);
    const segs = segmentsOut();
    this.#writes = this.#pids.map((p) => (segs.get(p) ?? NaN) - (this.#segs0.get(p) ?? NaN));
    return cpu;
  }

  /** TCP segments sent per process between the last `start()` and `stop()`. */
  writes(): number[] {
    return this.#writes;
  }
}

/** A Deno program started by {@link spawnDeno}. */
export interface DenoChild {
  readonly pid: number;
  /** The JSON printed after `READY `. */
  readonly info: Record<string, unknown>;
  /** Sends one line on its stdin and resolves with the first stdout line starting with `reply`. */
  command(line: string, reply: string, timeoutMs?: number): Promise<string>;
  /** Resolves with the next stdout line starting with `prefix`. */
  next(prefix: string, timeoutMs?: number): Promise<string>;
  kill(signal?: Deno.Signal): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
  readonly exited: Promise<Deno.CommandStatus>;
}

const children = new Set<Deno.ChildProcess>();
globalThis.addEventListener("unload", () => {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch { /* gone */ }
  }
});

/**
 * Starts `deno run -A [denoFlags] <script>` with `env`, piped stdin/stdout (stderr inherited),
 * and waits for its `READY {json}` line.
 */
export async function spawnDeno(
  script: URL,
  env: Record<string, string>,
  options: { denoFlags?: string[]; readyTimeout?: number } = {},
): Promise<DenoChild> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...(options.denoFlags ?? []), script.pathname],
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  children.add(proc);
  const writer = proc.stdin.getWriter();
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  const backlog: string[] = [];
  let gone = false;
  const onLine = (line: string) => {
    const i = waiters.findIndex((w) => line.startsWith(w.prefix));
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(line);
    else if (/^[A-Z_]+( |$)/.test(line)) backlog.push(line);
    else if (line.trim() !== "") console.log(`  [${proc.pid}] ${line}`);
  };
  const reading = (async () => {
    let rest = "";
    for await (const chunk of proc.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      for (let i; (i = rest.indexOf("\n")) >= 0; rest = rest.slice(i + 1)) onLine(rest.slice(0, i));
    }
  })().catch(() => {});
  const exited = proc.status.then(async (s) => {
    gone = true;
    children.delete(proc);
    await reading;
    return s;
  });
  const next = (prefix: string, timeoutMs = 60_000): Promise<string> => {
    const j = backlog.findIndex((l) => l.startsWith(prefix));
    if (j >= 0) return Promise.resolve(backlog.splice(j, 1)[0]!);
    if (gone) return Promise.reject(new Error(`Process ${proc.pid} exited`));
    return new Promise((resolve, reject) => {
      const w = {
        prefix,
        resolve: (l: string) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`No "${prefix}" line from process ${proc.pid} in ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.push(w);
      void exited.then(() => {
        if (!waiters.includes(w)) return;
        waiters.splice(waiters.indexOf(w), 1);
        clearTimeout(timer);
        reject(new Error(`Process ${proc.pid} exited before "${prefix}"`));
      });
    });
  };
  const kill = (signal: Deno.Signal = "SIGKILL") => {
    if (gone) return;
    try {
      proc.kill(signal);
    } catch { /* gone */ }
  };
  let info: Record<string, unknown>;
  try {
    const ready = await next("READY", options.readyTimeout ?? 60_000);
    info = JSON.parse(ready.slice(5).trim() || "{}");
  } catch (err) {
    kill("SIGKILL");
    await exited;
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    pid: proc.pid,
    info,
    next,
    async command(line, reply, timeoutMs) {
      const answer = next(reply, timeoutMs);
      await writer.write(new TextEncoder().encode(line + "\n"));
      return await answer;
    },
    kill,
    stop: (graceMs = 10_000) =>
      stopping ??= (async () => {
        kill("SIGTERM");
        const timer = setTimeout(() => kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
        await writer.close().catch(() => {});
      })(),
    exited,
  };
}

/** Reads a JSON document from a nats-server's monitoring port. */
export async function monitor<T = Record<string, unknown>>(base: string, path: string): Promise<T> {
  const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(5000) });
  return await res.json() as T;
}

/** Subscriptions (`/subsz` num_subscriptions) and memory (`/varz` mem, RSS bytes) of a server. */
export async function serverStats(base: string): Promise<{ subs: number; mem: number }> {
  const [subsz, varz] = await Promise.all([
    monitor<{ num_subscriptions: number }>(base, "/subsz"),
    monitor<{ mem: number }>(base, "/varz"),
  ]);
  return { subs: subsz.num_subscriptions, mem: varz.mem };
}

/** Runs `fn` with `inflight` loops for `seconds`; returns completions per second. */
export async function throughput(
  fn: () => Promise<unknown>,
  seconds: number,
  inflight = 64,
): Promise<number> {
  let count = 0;
  const until = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (performance.now() < until) {
      await fn();
      count++;
    }
  }));
  return count / ((performance.now() - t0) / 1000);
}

/** Runs `fn(i)` for i in [0, n) with at most `inflight` at once. */
export async function pooled(
  n: number,
  inflight: number,
  fn: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(inflight, n) }, async () => {
    while (next < n) await fn(next++);
  }));
}

/** The machine's load average (1, 5, 15 min). */
export function loadAverage(): number[] {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
  } catch {
    return [];
  }
}

/** The `p` quantile of `xs` (0..1). */
export function quantile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}

/** What {@link rawMux} needs of a NATS connection. */
interface MuxConnection {
  subscribe(subject: string, opts: { callback: (err: unknown, msg: MuxMsg) => void }): unknown;
  publish(subject: string, data: Uint8Array, opts: { reply: string }): void;
}
interface MuxMsg {
  readonly subject: string;
  readonly data: Uint8Array;
}

/**
 * Request/reply at the protocol's fastest, as a baseline: one subscription on a reply prefix,
 * a token per request, a map of pending requests, no timer per request.
 */
export function rawMux(
  nc: MuxConnection,
  subject: string,
  data: Uint8Array,
): () => Promise<Uint8Array> {
  const prefix = `_INBOX.${crypto.randomUUID().replaceAll("-", "")}`;
  const pending = new Map<string, (d: Uint8Array) => void>();
  let seq = 0;
  nc.subscribe(`${prefix}.*`, {
    callback: (_err, msg) => {
      const token = msg.subject.slice(prefix.length + 1);
      const done = pending.get(token);
      if (done) {
        pending.delete(token);
        done(msg.data);
      }
    },
  });
  return () =>
    new Promise((resolve) => {
      const token = (++seq).toString(36);
      pending.set(token, resolve);
      nc.publish(subject, data, { reply: `${prefix}.${token}` });
    });
}
