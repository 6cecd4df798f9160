/**
 * One clock: every reading of time and every timer of the runtime goes through a `Clock`
 * (`createSystem({ clock })`, `src/util/clock.ts`), so that tests can drive time with
 * `virtualClock()`. This check lists the direct calls left in `src/` and `adapters/` —
 * `performance.now`, `Date.now`, `new Date()`, `setTimeout`, `setInterval`, `clearTimeout`,
 * `clearInterval`, `Deno.unrefTimer` — outside comments and strings, tests excluded, and fails
 * on any that is not allowed:
 *
 * - by {@link ALLOWED}: whole files whose time is a real network's, disk's or process's;
 * - by a `real-time:` comment on the line or the line above, saying why (a macrotask turn that
 *   is not a wait, say).
 *
 * Run: `deno run -A scripts/clock_check.ts` (CI does); `tests/clock_check_test.ts` runs it too.
 *
 * @module
 */

import { join, relative } from "node:path";

/** Files allowed to use the host's time, and why (paths from the repository root). */
export const ALLOWED: Readonly<Record<string, string>> = {
  "src/util/clock.ts": "systemClock: the one place the runtime reads the host's time",
  "adapters/nats/": "the NATS client's own timers and the adapter's (connect, reconnect, KV " +
    "retries, consumer heartbeats) follow a real server: a virtual clock cannot hurry it",
  "adapters/libsql/": "the worker thread and the waits for a locked database follow a real disk",
  "adapters/testing/nats_server.ts": "starts and stops real nats-server processes",
  "adapters/testing/node_process.ts": "starts, pauses and kills real node processes",
  "src/mesh/conformance.ts": "a suite run by deno test against real meshes (NATS): real waits",
  "src/journal/conformance.ts": "a suite run by deno test against real journals: real waits",
  "src/store/conformance.ts": "a suite run by deno test against real stores: real waits",
  "src/mesh/durable_conformance.ts":
    "a suite run by deno test against real durable topics (JetStream): real waits",
  "src/util/_testing.ts": "helpers of the unit tests: bounded waits for real work, in real time",
  "adapters/hono/_topics.ts":
    "topic streams face real sockets: keep-alives, the stall bound and a stream's lifetime",
};

/** A direct use of the host's time. */
export interface DirectCall {
  /** Path from the root. */
  readonly file: string;
  /** 1-based line. */
  readonly line: number;
  /** What was called. */
  readonly call: string;
  /** The line, trimmed. */
  readonly text: string;
}

const CALLS =
  /(?<![\w$.])(?:globalThis\.)?(setTimeout|setInterval|clearTimeout|clearInterval)\s*\(|\b(performance\.now|Date\.now|Deno\.unrefTimer)\b|\bnew\s+Date\s*\(\s*\)/g;

/**
 * The code of `source` with comments and string contents blanked out (kept: newlines, and the
 * code inside template literals' `${…}`), and the text of the comments on each line.
 */
export function codeOf(source: string): { code: string; comments: Map<number, string> } {
  const out: string[] = [];
  const comments = new Map<number, string>();
  let line = 1;
  const note = (c: string) => comments.set(line, (comments.get(line) ?? "") + c);
  // a stack of contexts: "code" (with the brace depth that ends a template expression) or "tpl"
  const stack: ({ kind: "code"; depth: number } | { kind: "tpl" })[] = [{
    kind: "code",
    depth: 0,
  }];
  let i = 0;
  const n = source.length;
  const emit = (c: string) => {
    out.push(c === "\n" ? "\n" : c);
    if (c === "\n") line++;
  };
  const blank = (c: string) => emit(c === "\n" ? "\n" : " ");
  while (i < n) {
    const top = stack[stack.length - 1]!;
    const c = source[i]!;
    if (top.kind === "tpl") {
      if (c === "\\") {
        blank(c);
        if (i + 1 < n) blank(source[i + 1]!);
        i += 2;
      } else if (c === "`") {
        stack.pop();
        emit(c);
        i++;
      } else if (c === "$" && source[i + 1] === "{") {
        stack.push({ kind: "code", depth: 0 });
        emit("$");
        emit("{");
        i += 2;
      } else {
        blank(c);
        i++;
      }
      continue;
    }
    if (c === "/" && source[i + 1] === "/") {
      const end = source.indexOf("\n", i);
      const stop = end < 0 ? n : end;
      note(source.slice(i, stop));
      for (let j = i; j < stop; j++) blank(source[j]!);
      i = stop;
    } else if (c === "/" && source[i + 1] === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      for (let j = i; j < stop; j++) {
        if (source[j] !== "\n") note(source[j]!);
        blank(source[j]!);
      }
      i = stop;
    } else if (c === '"' || c === "'") {
      emit(c);
      i++;
      while (i < n && source[i] !== c && source[i] !== "\n") {
        if (source[i] === "\\") {
          blank(source[i]!);
          i++;
        }
        if (i < n) blank(source[i]!);
        i++;
      }
      if (i < n) {
        emit(source[i]!);
        i++;
      }
    } else if (c === "`") {
      stack.push({ kind: "tpl" });
      emit(c);
      i++;
    } else if (c === "{") {
      top.depth++;
      emit(c);
      i++;
    } else if (c === "}") {
      if (top.depth === 0 && stack.length > 1) stack.pop(); // the end of a `${…}`
      else top.depth--;
      emit(c);
      i++;
    } else {
      emit(c);
      i++;
    }
  }
  return { code: out.join(""), comments };
}

/** The direct calls in one file's source that no `real-time:` comment allows. */
export function directCalls(file: string, source: string): DirectCall[] {
  const { code, comments } = codeOf(source);
  const lines = source.split("\n");
  const found: DirectCall[] = [];
  const starts = [0];
  for (let i = 0; i < code.length; i++) if (code[i] === "\n") starts.push(i + 1);
  const lineOf = (index: number) => {
    let lo = 0, hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const marked = (line: number) =>
    /real-time:/.test(comments.get(line) ?? "") || /real-time:/.test(comments.get(line - 1) ?? "");
  for (const m of code.matchAll(CALLS)) {
    const line = lineOf(m.index);
    if (marked(line)) continue;
    found.push({
      file,
      line,
      call: (m[1] ?? m[2] ?? "new Date()").trim(),
      text: (lines[line - 1] ?? "").trim(),
    });
  }
  return found;
}

/** Whether `file` (from the root) is allowed as a whole by {@link ALLOWED}. */
export function allowed(file: string): boolean {
  return Object.keys(ALLOWED).some((p) => p.endsWith("/") ? file.startsWith(p) : file === p);
}

/** Production files under `dirs` of `root`: `.ts` and `.js`, tests excluded. */
async function* sources(root: string, dirs: readonly string[]): AsyncGenerator<string> {
  const walk = async function* (dir: string): AsyncGenerator<string> {
    for await (const e of Deno.readDir(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory) yield* walk(path);
      else if (/\.(ts|js)$/.test(e.name) && !/_test\.ts$/.test(e.name)) yield path;
    }
  };
  for (const d of dirs) yield* walk(join(root, d));
}

/** Every direct call under `dirs` of `root` that is not allowed. */
export async function check(
  root: string,
  dirs: readonly string[] = ["src", "adapters"],
): Promise<DirectCall[]> {
  const found: DirectCall[] = [];
  for await (const path of sources(root, dirs)) {
    const file = relative(root, path).replaceAll("\\", "/");
    if (allowed(file)) continue;
    found.push(...directCalls(file, await Deno.readTextFile(path)));
  }
  return found.sort((a, b) => a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line);
}

if (import.meta.main) {
  const root = join(import.meta.dirname!, "..");
  const found = await check(root);
  for (const f of found) console.log(`${f.file}:${f.line}: ${f.call}: ${f.text}`);
  if (found.length > 0) {
    console.log(
      `${found.length} direct use(s) of the host's time: go through the node's Clock ` +
        "(system.clock, a clock passed down), or say why with a `real-time:` comment",
    );
    Deno.exit(1);
  }
  console.log("clock check: no direct use of the host's time outside the allowed files");
}
