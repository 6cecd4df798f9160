/**
 * Outside use: the README's quick start, cluster snippet (with its own nats-server) and
 * gateway, run as a user's project would run them: in a temp folder whose deno.json links this
 * checkout as `@troupe/troupe` (Deno's `"links"`), type-checked there, each run twice.
 */
import assert from "node:assert/strict";
import { checkSnippets } from "../scripts/snippets.ts";

Deno.test("outside: the README's snippets type-check and run twice in a user project linking the checkout", async () => {
  const readme = new URL("../README.md", import.meta.url).pathname;
  const results = await checkSnippets([readme]);
  for (const r of results) {
    assert.ok(r.ok, `README.md:${r.snippet.line} (${r.snippet.kind}) failed:\n${r.error}`);
  }
  const programs = results.filter((r) => r.snippet.kind === "program");
  const code = (r: (typeof programs)[number]) => r.snippet.code;
  // the quick start, the cluster snippet on NATS, and the gateway: each ran (twice)
  const quick = programs.find((r) => /journal: "file:\.\/data\/troupe\.db"/.test(code(r)));
  const cluster = programs.find((r) => r.snippet.nats > 0 && /natsMesh/.test(code(r)));
  const gateway = programs.find((r) => /gateway\(system/.test(code(r)));
  for (const [what, r] of [["quick start", quick], ["cluster", cluster], ["gateway", gateway]]) {
    assert.ok(r && typeof r === "object" && r.ran, `the README's ${what} snippet ran`);
  }
  // the actor type they share is a module of the user's project
  assert.ok(results.some((r) => r.snippet.kind === "module" && r.snippet.file === "account.ts"));
});
