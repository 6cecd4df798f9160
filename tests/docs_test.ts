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
  ]);
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
