/**
 * The layering of the code, checked on the real import graph (`deno info --json`, type-only
 * imports included) of every file of `src/` and `adapters/` and of the entry points `mod.ts` and
 * `spi.ts`:
 *
 * - **src/ is layered by folder**, top to bottom: `src/system.ts` (the composition root) and
 *   `src/options.ts` (the options it validates), then
 *   {@link LAYERS} (`dispatch` → `actor` → `observe` → `config` → `store` → `auth` → `directory`
 *   → `mesh` → `journal` → `codec` → `util`), then `src/errors.ts`. A file imports files of its
 *   own layer or of layers below it, never above; tests under `src/` too, and they import
 *   nothing outside `src/` (no `tests/` helpers). `src/` imports no adapter and no adapter
 *   package ({@link ADAPTER_PACKAGES}).
 * - **The entry points** `mod.ts` and `spi.ts` re-export `src/`; `mod.ts` may load the libSQL
 *   adapter lazily (a dynamic `import()`), so importing it never loads libSQL.
 * - **Adapters** import only `mod.ts`, `spi.ts`, their own folder's files and other adapters'
 *   entry points (`adapters/<name>/mod.ts`). Their tests may also import `tests/` (the shared
 *   integration suites and fixtures) and `examples/`, never `src/`.
 * - **No file cycles**, in any folder (static imports: a dynamic `import()` loads later and
 *   closes no cycle).
 *
 * Usage: `deno run -A scripts/layers.ts`. Prints each violation and exits 1 when there is one;
 * the last line is "layers: N files, N imports, N violations".
 *
 * @module
 */

/** The folders of `src/`, top to bottom (`src/system.ts` above them, `src/errors.ts` below). */
export const LAYERS = [
  "dispatch",
  "actor",
  "observe",
  "config",
  "store",
  "auth",
  "directory",
  "mesh",
  "journal",
  "codec",
  "util",
] as const;

/** npm packages only adapters may use. */
export const ADAPTER_PACKAGES = [/^(npm:)?@libsql\//, /^(npm:)?@nats-io\//, /^(npm:)?hono(\/|$)/];

/** One import of a file of the repository. */
export interface Import {
  /** The imported file, relative to the repository (`src/mesh/types.ts`), or the package. */
  readonly to: string;
  /** Whether `to` is a package (npm, node:), not a file of the repository. */
  readonly external: boolean;
  /** A dynamic `import()`. */
  readonly dynamic: boolean;
}

/** The import graph: each file of the repository (relative path) with its imports. */
export type Graph = ReadonlyMap<string, readonly Import[]>;

/** One broken rule. */
export interface Violation {
  /** The importing file (for a cycle, its first file). */
  readonly file: string;
  /** What is wrong, in a sentence. */
  readonly message: string;
}

/** The layer rank of a file of `src/` (0 = the top), or undefined for a folder not listed. */
function rank(file: string): number | undefined {
  const top = file.replace(/_test\.ts$/, ".ts"); // a test beside a file of src/ is of its layer
  if (top === "src/system.ts" || top === "src/options.ts") return 0;
  if (top === "src/errors.ts") return LAYERS.length + 1;
  const folder = /^src\/([^/]+)\//.exec(file)?.[1];
  if (folder === undefined) return undefined;
  const i = (LAYERS as readonly string[]).indexOf(folder);
  return i < 0 ? undefined : i + 1;
}

/** The name of a layer, for messages. */
function layerOf(file: string): string {
  if (/^src\/[^/]+\.ts$/.test(file)) return file;
  return /^(src\/[^/]+)\//.exec(file)?.[1] ?? file;
}

const isTest = (file: string) => /_test\.ts$/.test(file);
const adapterOf = (file: string) => /^adapters\/([^/]+)\//.exec(file)?.[1];

/** The rule an import breaks, or undefined. */
function broken(from: string, imp: Import): string | undefined {
  const to = imp.to;
  if (from.startsWith("src/")) {
    if (imp.external) {
      return ADAPTER_PACKAGES.some((re) => re.test(to))
        ? `src/ imports the adapter package "${to}"`
        : undefined;
    }
    if (!to.startsWith("src/")) {
      if (to.startsWith("adapters/")) return `src/ imports the adapter file ${to}`;
      if (to.startsWith("tests/")) return `a file of src/ imports the test helper ${to}`;
      return `src/ imports ${to}, outside src/`;
    }
    const a = rank(from), b = rank(to);
    if (a === undefined || b === undefined) return undefined; // reported once per file

    if (b < a) return `${layerOf(from)} imports ${to}, of ${layerOf(to)}, a layer above it`;
    return undefined;
  }
  if (from === "mod.ts" || from === "spi.ts") {
    if (imp.external) return undefined;
    if (to.startsWith("src/")) return undefined;
    if (from === "mod.ts" && imp.dynamic && /^adapters\/[^/]+\/mod\.ts$/.test(to)) {
      return undefined;
    }
    return `${from} imports ${to}${imp.dynamic ? "" : " (only a dynamic import of an adapter)"}`;
  }
  const adapter = adapterOf(from);
  if (adapter !== undefined) {
    if (imp.external) return undefined;
    if (to === "mod.ts" || to === "spi.ts") return undefined;
    if (adapterOf(to) === adapter) return undefined;
    if (/^adapters\/[^/]+\/mod\.ts$/.test(to)) return undefined;
    if (isTest(from) && (to.startsWith("tests/") || to.startsWith("examples/"))) return undefined;
    return `adapters/${adapter} imports ${to}: adapters import only mod.ts, spi.ts, their own ` +
      `files and other adapters' mod.ts${
        isTest(from) ? " (their tests also tests/, examples/)" : ""
      }`;
  }
  return undefined;
}

/** Whether a file is one the check covers. */
export function covered(file: string): boolean {
  return file.startsWith("src/") || file.startsWith("adapters/") || file === "mod.ts" ||
    file === "spi.ts";
}

/** The file cycles among `files` (static imports), each as a list of files, smallest first. */
export function cycles(graph: Graph, files: Iterable<string>): string[][] {
  const within = new Set(files);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let next = 0;
  const next_ = (f: string) =>
    (graph.get(f) ?? []).filter((i) => !i.external && !i.dynamic && within.has(i.to))
      .map((i) => i.to);
  // Tarjan's strongly connected components, iterative (no deep recursion).
  for (const root of within) {
    if (index.has(root)) continue;
    const work: { file: string; deps: string[]; at: number }[] = [];
    const open = (file: string) => {
      index.set(file, next);
      low.set(file, next);
      next++;
      stack.push(file);
      onStack.add(file);
      work.push({ file, deps: next_(file), at: 0 });
    };
    open(root);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      if (top.at < top.deps.length) {
        const dep = top.deps[top.at++]!;
        if (!index.has(dep)) open(dep);
        else if (onStack.has(dep)) {
          low.set(top.file, Math.min(low.get(top.file)!, index.get(dep)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.file, Math.min(low.get(parent.file)!, low.get(top.file)!));
      if (low.get(top.file) === index.get(top.file)) {
        const scc: string[] = [];
        let f: string;
        do {
          f = stack.pop()!;
          onStack.delete(f);
          scc.push(f);
        } while (f !== top.file);
        const selfLoop = next_(top.file).includes(top.file);
        if (scc.length > 1 || selfLoop) out.push(scc.sort());
      }
    }
  }
  return out.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** Every broken rule of the graph: upward or outward imports, then file cycles. */
export function violations(graph: Graph): Violation[] {
  const out: Violation[] = [];
  const files = [...graph.keys()].filter(covered).sort();
  for (const file of files) {
    if (file.startsWith("src/") && rank(file) === undefined) {
      out.push({
        file,
        message: `${layerOf(file)} is not a layer (add it to LAYERS, in its place)`,
      });
    }
    const seen = new Set<string>();
    for (const imp of graph.get(file) ?? []) {
      const message = broken(file, imp);
      if (message !== undefined && !seen.has(message)) {
        seen.add(message);
        out.push({ file, message });
      }
    }
  }
  for (const cycle of cycles(graph, files)) {
    out.push({ file: cycle[0]!, message: `a file cycle: ${cycle.join(" ↔ ")}` });
  }
  return out;
}

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The `.ts`/`.js` files under `dir` of the repository `repo`, relative to it. */
export async function filesUnder(repo: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${repo}/${rel}`)) {
      const path = `${rel}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (/\.(ts|js)$/.test(e.name)) out.push(path);
    }
  };
  await walk(dir);
  return out.sort();
}

/** A module of `deno info --json`. */
interface InfoModule {
  readonly specifier: string;
  readonly dependencies?: readonly {
    readonly specifier: string;
    readonly code?: { readonly specifier: string };
    readonly type?: { readonly specifier: string };
    readonly isDynamic?: boolean;
  }[];
}

/**
 * The import graph of `files` (relative to `repo`) and everything they import, read with one
 * `deno info --json` of a root module that imports them all (the repository's deno.json
 * resolves the packages).
 */
export async function importGraph(repo: string, files: readonly string[]): Promise<Graph> {
  const root = await Deno.makeTempFile({ dir: repo, prefix: ".layers_root_", suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      root,
      files.map((f) => `import ${JSON.stringify(`./${f}`)};`).join("\n") + "\n",
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", root],
      cwd: repo,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`deno info failed:\n${new TextDecoder().decode(out.stderr)}`);
    }
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: InfoModule[];
    };
    const base = new URL(`file://${repo}/`).href;
    const rel = (spec: string) => spec.startsWith(base) ? spec.slice(base.length) : undefined;
    const graph = new Map<string, Import[]>();
    for (const m of info.modules) {
      const from = rel(m.specifier);
      if (from === undefined || m.specifier === new URL(`file://${root}`).href) continue;
      const imports: Import[] = [];
      for (const d of m.dependencies ?? []) {
        const dynamic = d.isDynamic === true;
        const targets = new Set([d.code?.specifier, d.type?.specifier]);
        for (const t of targets) {
          if (t === undefined) continue;
          const to = rel(t);
          // A package (npm:, node:, or a bare name that resolves into node_modules).
          if (to === undefined || to.startsWith("node_modules/")) {
            imports.push({ to: d.specifier, external: true, dynamic });
          } else imports.push({ to, external: false, dynamic });
        }
      }
      graph.set(from, imports);
    }
    return graph;
  } finally {
    await Deno.remove(root).catch(() => {});
  }
}

if (import.meta.main) {
  const files = [
    "mod.ts",
    "spi.ts",
    ...await filesUnder(REPO, "src"),
    ...await filesUnder(REPO, "adapters"),
  ].filter((f) => {
    try {
      return Deno.statSync(`${REPO}/${f}`).isFile;
    } catch {
      return false;
    }
  });
  const graph = await importGraph(REPO, files);
  const found = violations(graph);
  for (const v of found) console.log(`!! ${v.file}: ${v.message}`);
  const checked = [...graph.keys()].filter(covered);
  const edges = checked.reduce((n, f) => n + graph.get(f)!.length, 0);
  console.log(`layers: ${checked.length} files, ${edges} imports, ${found.length} violations`);
  Deno.exit(found.length === 0 ? 0 : 1);
}
