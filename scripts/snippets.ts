/**
 * The documentation's code, checked as a user would write it: every fenced TypeScript block
 * (info string `ts`) of the given Markdown files is written into a user project in a temp
 * folder whose deno.json links this checkout as the `@troupe/troupe` package (Deno's `"links"`,
 * as one develops a JSR package locally), type-checked there, and each whole program is run
 * twice in its own folder (the second run sees what the first left: a database, a file).
 *
 * The words after `ts` in a block's info string say what it is:
 * - nothing: a whole program, type-checked and run twice;
 * - `file=account.ts`: a module other blocks of the page import (`./account.ts`), checked;
 * - `fragment`: part of the program above it on the page, type-checked inside it (appended in a
 *   block scope), never run;
 * - `nats`: a program that needs NATS, run with `NATS_URL` set to a throw-away nats-server
 *   started for it (`nats=3`: a 3-server cluster);
 * - `norun`: a whole program that is type-checked but never run (it needs what a test cannot
 *   give it: a production database, an identity provider, a server that keeps running);
 * - `no-check`: shown, never checked (for code that is not TypeScript for Deno).
 *
 * An HTML comment above a block (blank lines between are fine),
 * `<!-- snippet: declare const system: System; -->`,
 * is code the reader does not see that goes in front of the block when it is checked: the
 * declarations (and imports) a short excerpt leaves out.
 *
 * Usage: `deno run -A scripts/snippets.ts [file.md …]` (default: README.md, docs/*.md and
 * docs/guide/*.md). Exit code 1 when a snippet fails; the last line is
 * "N snippets: N checked, N run twice, N failed".
 *
 * @module
 */

import { startNatsCluster } from "../adapters/testing/mod.ts";

/** One fenced TypeScript block. */
export interface Snippet {
  /** The Markdown file. */
  readonly doc: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** The code. */
  readonly code: string;
  /** What kind of block (see the module doc). */
  readonly kind: "program" | "module" | "fragment" | "skip";
  /** For `module`: the file name other blocks import. */
  readonly file?: string;
  /** NATS servers a program needs (0: none). */
  readonly nats: 0 | 1 | 3;
  /** A program that is type-checked, never run (`norun`). */
  readonly norun?: boolean;
  /** Code in front of the block when checked (the `<!-- snippet: … -->` above it). */
  readonly prelude?: string;
}

/** The outcome of one snippet. */
export interface SnippetResult {
  readonly snippet: Snippet;
  /** Whether it passed the type check (and both runs, for a program). */
  readonly ok: boolean;
  /** Whether it was run (programs only). */
  readonly ran: boolean;
  /** What failed. */
  readonly error?: string;
}

/** Options of {@link checkSnippets}. */
export interface CheckOptions {
  /** The checkout to link as `@troupe/troupe`. @default {this script's repository} */
  readonly repo?: string;
  /** Most time one run of one program may take, ms. @default {60000} */
  readonly runTimeout?: number;
  /** Prints progress. @default {false} */
  readonly verbose?: boolean;
}

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const DENO = Deno.execPath();

/** The ```ts blocks of a Markdown text. */
export function parseSnippets(doc: string, text: string): Snippet[] {
  const out: Snippet[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(ts|typescript)\b(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const attrs = open[3]!.trim().split(/\s+/).filter((a) => a !== "");
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) {
      body.push(lines[j]!.slice(Math.min(indent, /^\s*/.exec(lines[j]!)![0].length)));
    }
    const file = attrs.find((a) => a.startsWith("file="))?.slice("file=".length);
    let k = i - 1; // the nearest line above that is not blank (deno fmt puts one between)
    while (k >= 0 && lines[k]!.trim() === "") k--;
    const above = k >= 0 ? /^<!--\s*snippet:\s*([\s\S]*?)\s*-->\s*$/.exec(lines[k]!) : null;
    const natsAttr = attrs.find((a) => a === "nats" || a.startsWith("nats="));
    const kind = attrs.includes("no-check")
      ? "skip"
      : file !== undefined
      ? "module"
      : attrs.includes("fragment")
      ? "fragment"
      : "program";
    out.push({
      doc,
      line: i + 1,
      code: body.join("\n") + "\n",
      kind,
      ...(file !== undefined ? { file } : {}),
      nats: natsAttr === undefined ? 0 : natsAttr === "nats=3" ? 3 : 1,
      ...(kind === "program" && attrs.includes("norun") ? { norun: true } : {}),
      ...(above ? { prelude: above[1]! + "\n" } : {}),
    });
    i = j;
  }
  return out;
}

const IMPORT = /^import\s[\s\S]*?from\s+["'][^"']+["'];?\s*$|^import\s+["'][^"']+["'];?\s*$/gm;

/** Splits a module into its import declarations and the rest. */
function splitImports(code: string): { imports: string[]; body: string } {
  const imports: string[] = [];
  const body = code.replace(IMPORT, (m) => {
    imports.push(m.trim());
    return "";
  });
  return { imports, body };
}

/** Merges import declarations: named imports of one module become one declaration. */
function mergeImports(decls: string[]): string[] {
  const named = new Map<string, Set<string>>();
  const other = new Set<string>();
  for (const d of decls) {
    const m = /^import\s+(type\s+)?\{([\s\S]*)\}\s+from\s+["']([^"']+)["'];?$/.exec(d);
    if (!m) {
      other.add(d);
      continue;
    }
    const set = named.get(m[3]!) ?? new Set<string>();
    named.set(m[3]!, set);
    for (const name of m[2]!.split(",").map((n) => n.trim()).filter((n) => n !== "")) {
      set.add(m[1] && !name.startsWith("type ") ? `type ${name}` : name);
    }
  }
  const out = [...other];
  for (const [from, names] of named) {
    // a value import covers the type-only import of the same name
    const values = new Set([...names].filter((n) => !n.startsWith("type ")));
    const list = [...names].filter((n) => !(n.startsWith("type ") && values.has(n.slice(5))));
    out.push(`import { ${list.join(", ")} } from "${from}";`);
  }
  return out;
}

/** The deno.json of the user project: the package linked, the libraries the docs use. */
async function projectConfig(repo: string): Promise<string> {
  const own = JSON.parse(await Deno.readTextFile(`${repo}/deno.json`));
  const imports: Record<string, string> = {
    "@troupe/troupe": `jsr:@troupe/troupe@^${own.version}`,
  };
  for (const name of ["hono", "zod", "valibot", "@valibot/to-json-schema", "jose"]) {
    if (own.imports?.[name]) imports[name] = own.imports[name];
  }
  return JSON.stringify(
    { imports, links: [repo], compilerOptions: own.compilerOptions ?? {} },
    null,
    2,
  ) + "\n";
}

function slug(doc: string): string {
  return doc.replace(/^.*?([^/]+)\.md$/, "$1").replace(/[^A-Za-z0-9_-]/g, "_");
}

async function run(
  args: string[],
  cwd: string,
  env: Record<string, string>,
  timeout: number,
): Promise<{ ok: boolean; output: string }> {
  const child = new Deno.Command(DENO, {
    args,
    cwd,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, timeout);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return {
    ok: out.success && !timedOut,
    output: timedOut ? `${text}\n(killed after ${timeout} ms)` : text,
  };
}

/**
 * Checks the ```ts blocks of `docs` (Markdown files) in a user project linked to the checkout:
 * one type check of every block, then two runs of each program.
 */
export async function checkSnippets(
  docs: string[],
  options: CheckOptions = {},
): Promise<SnippetResult[]> {
  const repo = options.repo ?? REPO;
  const timeout = options.runTimeout ?? 60_000;
  const log = options.verbose ? (s: string) => console.log(s) : () => {};
  const root = await Deno.makeTempDir({ prefix: "troupe-snippets-" });
  const results: SnippetResult[] = [];
  try {
    await Deno.writeTextFile(`${root}/deno.json`, await projectConfig(repo));
    // every block, as a file of its page's folder
    const files = new Map<string, Snippet>(); // path relative to root → snippet
    const programs: [string, Snippet][] = [];
    for (const doc of docs) {
      const snippets = parseSnippets(doc, await Deno.readTextFile(doc));
      const dir = slug(doc);
      await Deno.mkdir(`${root}/${dir}`, { recursive: true });
      let last: Snippet | undefined;
      for (const [n, s] of snippets.entries()) {
        if (s.kind === "skip") {
          results.push({ snippet: s, ok: true, ran: false });
          continue;
        }
        let name = s.file ?? `snippet_${String(n + 1).padStart(2, "0")}_line${s.line}.ts`;
        let code = (s.prelude ?? "") + s.code;
        if (s.kind === "fragment" && last) {
          const base = splitImports((last.prelude ?? "") + last.code);
          const own = splitImports(code);
          code = [
            ...mergeImports([...base.imports, ...own.imports]),
            base.body,
            "// ---- the fragment ----",
            "{",
            own.body,
            "}",
          ].join("\n");
          name = name.replace(/\.ts$/, "_fragment.ts");
        }
        // a module: also keep line numbers readable in errors
        await Deno.writeTextFile(`${root}/${dir}/${name}`, `// ${s.doc}:${s.line}\n${code}`);
        files.set(`${dir}/${name}`, s);
        if (s.kind === "program") {
          last = s;
          if (!s.norun) programs.push([`${dir}/${name}`, s]);
        }
      }
    }
    // one type check of everything (the package is checked once, as a user's dependency)
    log(`== deno check: ${files.size} snippets`);
    const check = await run(["check", ...files.keys()], root, {}, 10 * timeout);
    const failedFiles = new Set<string>();
    if (!check.ok) {
      for (const path of files.keys()) {
        if (check.output.includes(`${root}/${path}`)) failedFiles.add(path);
      }
      // an error the snippets do not explain (the package itself, the config): all fail
      if (failedFiles.size === 0) { for (const path of files.keys()) failedFiles.add(path); }
    }
    for (const [path, s] of files) {
      if (failedFiles.has(path)) {
        results.push({ snippet: s, ok: false, ran: false, error: excerpt(check.output, path) });
      } else if (s.kind !== "program" || s.norun) {
        results.push({ snippet: s, ok: true, ran: false });
      }
    }
    // two runs of each program that passed, in a folder of its own
    for (const [path, s] of programs) {
      if (failedFiles.has(path)) continue;
      const cwd = `${root}/${path.replace(/\.ts$/, "_run")}`;
      await Deno.mkdir(cwd, { recursive: true });
      let error: string | undefined;
      for (const attempt of [1, 2]) {
        log(`== run ${attempt}/2 ${s.doc}:${s.line}`);
        const cluster = s.nats > 0
          ? await startNatsCluster({ servers: s.nats === 3 ? 3 : 1, websocket: false })
          : undefined;
        try {
          const env: Record<string, string> = cluster ? { NATS_URL: cluster.urls.join(",") } : {};
          const r = await run(["run", "-A", "--no-check", `${root}/${path}`], cwd, env, timeout);
          if (!r.ok) error = `run ${attempt} failed:\n${r.output}`;
        } finally {
          await cluster?.stop();
        }
        if (error) break;
      }
      results.push({
        snippet: s,
        ok: error === undefined,
        ran: error === undefined,
        ...(error ? { error } : {}),
      });
    }
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
  return results;
}

/** The part of `deno check`'s output about one file. */
function excerpt(output: string, path: string): string {
  const blocks = output.split(/\n(?=\S*TS\d+ |error)/);
  const mine = blocks.filter((b) => b.includes(path) && /^\S*TS\d+ /.test(b));
  return (mine.length > 0 ? mine.join("\n") : output).slice(0, 4000);
}

/** Prints the results; returns whether all passed. */
export function report(results: SnippetResult[]): boolean {
  const failed = results.filter((r) => !r.ok);
  for (const r of failed) {
    console.log(`!! ${r.snippet.doc}:${r.snippet.line} (${r.snippet.kind})\n${r.error}\n`);
  }
  const checked = results.filter((r) => r.snippet.kind !== "skip").length;
  const ran = results.filter((r) => r.ran).length;
  console.log(
    `${results.length} snippets: ${checked - failed.length} checked, ${ran} run twice, ` +
      `${failed.length} failed`,
  );
  return failed.length === 0;
}

if (import.meta.main) {
  let docs = Deno.args;
  if (docs.length === 0) {
    docs = ["README.md"];
    for (const dir of ["docs", "docs/guide"]) {
      for await (const e of Deno.readDir(`${REPO}/${dir}`)) {
        if (e.isFile && e.name.endsWith(".md")) docs.push(`${dir}/${e.name}`);
      }
    }
    docs = docs.map((d) => `${REPO}/${d}`).sort();
  }
  const ok = report(await checkSnippets(docs, { verbose: true }));
  Deno.exit(ok ? 0 : 1);
}
