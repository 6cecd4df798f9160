/**
 * Run a Troupe node (or any Deno program) as a child process in tests: start it, wait until
 * it says `READY {json}`, follow its output line by line, and kill it — `SIGKILL` for a crash,
 * `SIGSTOP`/`SIGCONT` for a pause, `SIGTERM` for a graceful stop.
 *
 * @example
 * ```ts
 * import { startNodeProcess } from "@troupe/troupe/testing";
 *
 * await using node = await startNodeProcess({
 *   script: new URL("./my_node.ts", import.meta.url),
 *   env: { TROUPE_SERVERS: "nats://127.0.0.1:4222" },
 * });
 * console.log(node.pid, node.info); // 12345 { node: "n1" }
 * node.kill("SIGKILL");              // crash it
 * await node.exited;
 * ```
 *
 * @module
 */

/** Options of {@link startNodeProcess}. */
export interface NodeProcessOptions {
  /** The Deno program to run (`deno run -A <script>`): a path or a `file:` URL. */
  script: string | URL;
  /** Arguments passed to the program. @default {[]} */
  args?: string[];
  /** Extra environment variables (added to this process's environment). */
  env?: Record<string, string>;
  /** How long to wait for the `READY {json}` line, in ms. @default {30000} */
  readyTimeout?: number;
  /** How many output lines (stdout and stderr each) are kept. @default {2000} */
  maxLines?: number;
}

/** A running child process started by {@link startNodeProcess}. */
export interface NodeProcess extends AsyncDisposable {
  /** Its process id. */
  readonly pid: number;
  /** The JSON the program printed after `READY ` (parsed). */
  readonly info: Record<string, unknown>;
  /**
   * The last lines it wrote to stdout (at most `maxLines`), oldest first. Lines of stderr
   * are not included: see {@link NodeProcess.stderr}.
   */
  lines(): string[];
  /** The last lines it wrote to stderr (at most `maxLines`), oldest first. */
  stderr(): string[];
  /**
   * Resolves with the first stdout line matching `re` printed after the call (or already
   * kept in {@link NodeProcess.lines} when `{ past: true }`), rejecting after `timeout` ms
   * or when the process exits first.
   */
  waitForLine(re: RegExp, timeout?: number, options?: { past?: boolean }): Promise<string>;
  /** Sends a signal (default `SIGKILL`); does nothing once it has exited. */
  kill(signal?: Deno.Signal): void;
  /**
   * Stops it: `SIGCONT` (in case it was stopped), `SIGTERM`, waits up to `graceMs` (default
   * 5000) for it to exit, then `SIGKILL`; resolves once it has exited and its output is
   * read. Idempotent.
   */
  stop(graceMs?: number): Promise<void>;
  /** Resolves when the process has exited (after its output was read). */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Whether it has exited. */
  readonly hasExited: boolean;
}

/** Every child not yet reaped: killed if this process exits without stopping them. */
const live = new Set<Deno.ChildProcess>();
globalThis.addEventListener("unload", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone already
    }
  }
});

async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  try {
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = rest.indexOf("\n")) >= 0) {
        onLine(rest.slice(0, i).replace(/\r$/, ""));
        rest = rest.slice(i + 1);
      }
    }
  } catch {
    // the pipe broke: the process is gone
  }
  rest += decoder.decode();
  if (rest !== "") onLine(rest);
}

interface Waiter {
  re: RegExp;
  resolve: (line: string) => void;
  exited: () => void;
}

/**
 * Starts `deno run -A <script> [...args]` with stdout and stderr captured line by line, and
 * resolves once it prints a line `READY {json}` (the JSON becomes {@link NodeProcess.info}).
 * Rejects, with the tail of its stderr, when it exits first or does not get ready within
 * `readyTimeout` (the process is killed and awaited then).
 *
 * @example
 * ```ts
 * import { startNodeProcess } from "@troupe/troupe/testing";
 *
 * const node = await startNodeProcess({ script: "./tests/nodes/bank_node.ts", env: {} });
 * try {
 *   await node.waitForLine(/^LEASE /, 5_000);
 * } finally {
 *   await node.stop(); // SIGTERM, then SIGKILL after 5 s
 * }
 * ```
 */
export async function startNodeProcess(options: NodeProcessOptions): Promise<NodeProcess> {
  const script = options.script instanceof URL ? options.script.href : options.script;
  const maxLines = options.maxLines ?? 2000;
  const readyTimeout = options.readyTimeout ?? 30_000;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...(options.args ?? [])],
    env: options.env ?? {},
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  live.add(child);
  const out: string[] = [];
  const err: string[] = [];
  const waiters = new Set<Waiter>();
  const push = (buf: string[], line: string) => {
    buf.push(line);
    if (buf.length > maxLines) buf.splice(0, buf.length - maxLines);
  };
  const readers = Promise.all([
    readLines(child.stdout, (line) => {
      push(out, line);
      for (const w of waiters) {
        if (w.re.test(line)) {
          waiters.delete(w);
          w.resolve(line);
        }
      }
    }),
    readLines(child.stderr, (line) => push(err, line)),
  ]);
  let done = false;
  const exited = (async () => {
    const status = await child.status;
    await readers;
    live.delete(child);
    done = true;
    for (const w of waiters) w.exited();
    waiters.clear();
    return status;
  })();
  const tail = (n = 30) => err.slice(-n).join("\n") || out.slice(-n).join("\n");

  const waitForLine = (
    re: RegExp,
    timeout = 10_000,
    opts: { past?: boolean } = {},
  ): Promise<string> => {
    if (opts.past) {
      const found = out.find((l) => re.test(l));
      if (found !== undefined) return Promise.resolve(found);
    }
    if (done) {
      return Promise.reject(new Error(`Process ${child.pid} exited before printing ${re}`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`No line matching ${re} from process ${child.pid} within ${timeout} ms`));
      }, timeout);
      const w: Waiter = {
        re,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        exited: () => {
          clearTimeout(timer);
          reject(
            new Error(
              `Process ${child.pid} exited before printing ${re}; its output ended with:\n${tail()}`,
            ),
          );
        },
      };
      waiters.add(w);
    });
  };

  const kill = (signal: Deno.Signal = "SIGKILL") => {
    if (done) return;
    try {
      child.kill(signal);
    } catch {
      // exited meanwhile
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5000): Promise<void> =>
    stopping ??= (async () => {
      if (!done) {
        kill("SIGCONT");
        kill("SIGTERM");
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timedOut = await Promise.race([
          exited.then(() => false),
          new Promise<boolean>((r) => timer = setTimeout(() => r(true), graceMs)),
        ]);
        clearTimeout(timer);
        if (timedOut) kill("SIGKILL");
      }
      await exited;
    })();

  // Wait for READY.
  let info: Record<string, unknown>;
  try {
    const line = await waitForLine(/^READY(\s|$)/, readyTimeout, { past: true });
    const json = line.slice("READY".length).trim();
    info = json === "" ? {} : JSON.parse(json);
  } catch (e) {
    kill("SIGKILL");
    const status = await exited;
    throw new Error(
      `Node process ${script} did not get ready (${
        done ? `exit code ${status.code}${status.signal ? `, ${status.signal}` : ""}` : "timeout"
      }): ${e instanceof Error ? e.message : e}\n--- stderr tail ---\n${err.slice(-30).join("\n")}`,
    );
  }

  return {
    pid: child.pid,
    info,
    lines: () => [...out],
    stderr: () => [...err],
    waitForLine,
    kill,
    stop,
    exited,
    get hasExited() {
      return done;
    },
    [Symbol.asyncDispose]: () => stop(),
  };
}
