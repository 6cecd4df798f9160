/** The documentation checkers catch what they name (scripts/snippets.ts, scripts/doc_links.ts). */
import assert from "node:assert/strict";
import { parseSnippets } from "../scripts/snippets.ts";
import { brokenCitations } from "../scripts/doc_links.ts";

const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("snippets: blocks are programs, modules, fragments, NATS programs or skipped", () => {
  const md = [
    "```ts",
    "console.log(1);",
    "```",
    "```ts file=account.ts",
    "export const a = 1;",
    "```",
    "```ts fragment",
    "a;",
    "```",
    "```ts nats=3",
    "x;",
    "```",
    "```ts no-check",
    "y;",
    "```",
    "<!-- snippet: declare const z: number; -->",
    "",
    "```ts norun",
    "z;",
    "```",
    "```sh",
    "echo not ts",
    "```",
  ].join("\n");
  const s = parseSnippets("x.md", md);
  assert.deepEqual(s.map((b) => [b.kind, b.line, b.nats]), [
    ["program", 1, 0],
    ["module", 4, 0],
    ["fragment", 7, 0],
    ["program", 10, 3],
    ["skip", 13, 0],
    ["program", 18, 0],
  ]);
  assert.equal(s[5]!.norun, true, "norun: a program that is checked, never run");
  assert.equal(s[0]!.norun, undefined);
  assert.equal(s[5]!.prelude, "declare const z: number;\n", "the hidden code above a block");
  assert.equal(s[0]!.prelude, undefined);
  assert.equal(s[1]!.file, "account.ts");
  assert.equal(s[0]!.code, "console.log(1);\n");
});

Deno.test("doc links: a link, a code span or a document name that is not in the repository is caught", () => {
  const doc = `${repo}/docs/guide/x.md`;
  const text = [
    "See [the cluster guide](cluster.md), [a gone page](gone.md#top) and https://example.com.",
    "The journal port is `src/journal/types.ts`; the old one was `src/journal/nope.ts:12`.",
    "As DESIGN.md says, and as README.md says.",
    "Your `main.ts` is yours.",
    "```ts",
    'import "./src/not/checked.ts"; // code is not prose',
    "```",
  ].join("\n");
  assert.deepEqual(brokenCitations(doc, text).map((b) => [b.line, b.target]), [
    [1, "gone.md#top"],
    [2, "src/journal/nope.ts:12"],
    [3, "DESIGN.md"],
  ]);
});

/** The property names of an interface exported by `entry`, from `deno doc --json`. */
async function optionsOf(entry: string, name: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", entry],
    cwd: repo,
    stdout: "piped",
  }).output();
  const doc = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    nodes: Record<string, {
      symbols: {
        name: string;
        declarations: { kind: string; def?: { properties?: { name: string }[] } }[];
      }[];
    }>;
  };
  const symbols = Object.values(doc.nodes).flatMap((n) => n.symbols);
  const decl = symbols.find((s) => s.name === name)?.declarations.find((d) =>
    d.kind === "interface"
  );
  assert.ok(decl?.def?.properties, `${entry} exports the interface ${name}`);
  return decl.def.properties.map((p) => p.name);
}

/** The option names in the first column of the tables under one heading of options.md. */
function listed(md: string, heading: string): Set<string> {
  const start = md.indexOf(heading);
  assert.ok(start >= 0, `options.md has "${heading}"`);
  const rest = md.slice(start + heading.length);
  const end = rest.search(/\n#{2,3} /);
  const names = new Set<string>();
  for (const line of (end < 0 ? rest : rest.slice(0, end)).split("\n")) {
    const first = /^\|([^|]*)\|/.exec(line)?.[1] ?? "";
    for (const m of first.matchAll(/`([A-Za-z]+)`/g)) names.add(m[1]!);
  }
  return names;
}

Deno.test("options: docs/guide/options.md lists every option of createSystem, natsMesh, libsqlJournal and gateway", async () => {
  const md = await Deno.readTextFile(`${repo}/docs/guide/options.md`);
  const cases: [string, string, string][] = [
    ["mod.ts", "SystemOptions", "## `createSystem`"],
    ["adapters/nats/mod.ts", "NatsMeshOptions", "## `natsMesh`"],
    ["adapters/libsql/mod.ts", "LibsqlJournalOptions", "## `libsqlJournal`"],
    ["adapters/hono/mod.ts", "GatewayOptions", "## `gateway`"],
    ["adapters/hono/mod.ts", "GatewayLimits", "### `limits`"],
  ];
  for (const [entry, iface, heading] of cases) {
    const options = await optionsOf(entry, iface);
    assert.ok(options.length > 3, `${iface} has options`);
    const rows = listed(md, heading);
    const missing = options.filter((o) => !rows.has(o));
    assert.deepEqual(missing, [], `${iface} options missing under ${heading}`);
  }
});
