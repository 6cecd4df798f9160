/**
 * The documentation cites only files that are in the repository: every relative Markdown link,
 * and every code span that names a repository path (`src/…`, `adapters/…`, `docs/…`, a root
 * file such as `deno.json` or `DESIGN.md`), must point at a file or folder of this checkout.
 *
 * Usage: `deno run -A scripts/doc_links.ts [file.md …]` (default: README.md, docs/**, bench/README.md).
 * Exit code 1 when a citation is broken.
 *
 * @module
 */

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** A citation that points at nothing. */
export interface BrokenCitation {
  readonly doc: string;
  readonly line: number;
  readonly target: string;
}

const ROOTS = "src|adapters|tests|examples|bench|scripts|docs|\\.ci";
const PATH_SPAN = new RegExp(`^(?:\\./)?(?:${ROOTS})/[\\w./-]*[\\w/]$`);
const ROOT_FILE = /^[\w-]+\.(?:md|json|yaml|yml|ts|lock)$|^Dockerfile$/;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The broken citations of one Markdown file (`doc`: its path). */
export function brokenCitations(doc: string, text: string): BrokenCitation[] {
  const dir = doc.slice(0, doc.lastIndexOf("/"));
  const out: BrokenCitation[] = [];
  let fenced = false;
  text.split("\n").forEach((line, i) => {
    if (/^\s*```/.test(line)) fenced = !fenced;
    if (fenced) return;
    for (const m of line.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!.split("#")[0]!;
      if (target === "" || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // anchors, URLs
      if (!exists(`${dir}/${decodeURIComponent(target)}`)) {
        out.push({ doc, line: i + 1, target: m[1]! });
      }
    }
    // prose: a repository path with an extension, or an upper-case document name
    const prose = line.replace(/`[^`]*`/g, "").replace(/\]\([^)]*\)/g, "]");
    const pathWord = new RegExp(
      `(?<![\\w/.-])((?:${ROOTS})/[\\w./-]+\\.(?:ts|md|json|yaml))|\\b([A-Z]{2,}[A-Z_]*\\.md)\\b`,
      "g",
    );
    for (const m of prose.matchAll(pathWord)) {
      const word = m[1] ?? m[2]!;
      if (!exists(`${REPO}/${word}`) && !exists(`${dir}/${word}`)) {
        out.push({ doc, line: i + 1, target: word });
      }
    }
    for (const m of line.matchAll(/`([^`\s]+)`/g)) {
      const span = m[1]!.replace(/[:#].*$/, "");
      if (!PATH_SPAN.test(span) && !ROOT_FILE.test(span)) continue;
      if (
        ROOT_FILE.test(span) &&
        !/^[A-Z]+\.md$|^(deno|package)\.json$|^Dockerfile$|^compose\.yaml$/.test(span)
      ) {
        continue; // a bare file name (`main.ts`, `account.ts`) is the reader's, not ours
      }
      if (!exists(`${REPO}/${span}`) && !exists(`${dir}/${span}`)) {
        out.push({ doc, line: i + 1, target: m[1]! });
      }
    }
  });
  return out;
}

async function defaultDocs(): Promise<string[]> {
  const docs = [`${REPO}/README.md`, `${REPO}/bench/README.md`];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walk(`${dir}/${e.name}`);
      else if (e.name.endsWith(".md")) docs.push(`${dir}/${e.name}`);
    }
  };
  await walk(`${REPO}/docs`);
  return docs.filter(exists).sort();
}

if (import.meta.main) {
  const docs = Deno.args.length > 0 ? Deno.args : await defaultDocs();
  const broken: BrokenCitation[] = [];
  for (const doc of docs) broken.push(...brokenCitations(doc, await Deno.readTextFile(doc)));
  for (const b of broken) {
    console.log(
      `!! ${b.doc.replace(`${REPO}/`, "")}:${b.line} cites "${b.target}", not in the repository`,
    );
  }
  console.log(`${docs.length} docs: ${broken.length} broken citations`);
  Deno.exit(broken.length === 0 ? 0 : 1);
}
