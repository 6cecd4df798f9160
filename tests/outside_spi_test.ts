/**
 * Outside use of `./spi`: a third party's journal adapter, in a user project in a temp folder
 * whose deno.json links this checkout as `@troupe/troupe` (Deno's `"links"`), imports only the
 * package root and `@troupe/troupe/spi`, and runs `journalConformance` from its own
 * `deno test`: the same suite Troupe's memory and libSQL journals pass. A copy that swallows the
 * journal's conflicts is run too, and fails, so the suite is seen to check something.
 */
import assert from "node:assert/strict";

const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The adapter: a journal wrapping `memoryJournal()`, as a third party would publish it. */
const ADAPTER = `import { memoryJournal } from "@troupe/troupe";
import { type Append, type Journal, validateAppend } from "@troupe/troupe/spi";

/** A journal of the "acme" package: the memory journal, counting appends. */
export function acmeJournal(): Journal & { readonly appends: number } {
  const inner = memoryJournal();
  let appends = 0;
  return {
    ...inner,
    get appends() {
      return appends;
    },
    append(a: Append) {
      validateAppend(a); // the shape checks every journal makes, with the same errors
      appends++;
      return inner.append(a);
    },
  };
}
`;

const TEST = `import { journalConformance } from "@troupe/troupe/spi";
import { acmeJournal } from "./acme_journal.ts";

journalConformance("acme", () => Promise.resolve(acmeJournal()));
`;

/** A broken copy: conflicts on append are swallowed (a stale writer "succeeds"). */
const BROKEN_TEST = `import { journalConformance } from "@troupe/troupe/spi";
import { acmeJournal } from "./acme_journal.ts";

journalConformance("acme-broken", () => {
  const j = acmeJournal();
  return Promise.resolve({ ...j, append: (a) => j.append(a).catch(() => {}) });
});
`;

async function denoTest(cwd: string, file: string): Promise<{ ok: boolean; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", file],
    cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { ok: out.success, output: text };
}

/** `passed` and `failed` of `deno test`'s summary line. */
function summary(output: string): { passed: number; failed: number } {
  const m = /(?:ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed/.exec(output);
  assert.ok(m, `a deno test summary in:\n${output.slice(-3000)}`);
  return { passed: Number(m[1]), failed: Number(m[2]) };
}

Deno.test("outside: a third-party journal importing only the root and ./spi passes journalConformance under its own deno test", async () => {
  const own = JSON.parse(await Deno.readTextFile(`${repo}/deno.json`));
  const dir = await Deno.makeTempDir({ prefix: "troupe-spi-outside-" });
  try {
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        imports: { "@troupe/troupe": `jsr:@troupe/troupe@^${own.version}` },
        links: [repo],
        compilerOptions: own.compilerOptions ?? {},
      }),
    );
    await Deno.writeTextFile(`${dir}/acme_journal.ts`, ADAPTER);
    await Deno.writeTextFile(`${dir}/acme_journal_test.ts`, TEST);
    await Deno.writeTextFile(`${dir}/acme_broken_test.ts`, BROKEN_TEST);
    // the adapter's own imports: the package root and ./spi, nothing of the checkout's files
    const imports = [...ADAPTER.matchAll(/from "([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(imports, ["@troupe/troupe", "@troupe/troupe/spi"]);

    const good = await denoTest(dir, "acme_journal_test.ts");
    assert.ok(good.ok, `the conformance run failed:\n${good.output.slice(-4000)}`);
    const { passed, failed } = summary(good.output);
    assert.equal(failed, 0);
    assert.ok(passed >= 20, `the whole suite ran (${passed} tests)`);
    assert.match(good.output, /journal conformance \(acme\): append\(\)/);

    const broken = await denoTest(dir, "acme_broken_test.ts");
    assert.equal(broken.ok, false, "a journal that swallows conflicts fails the suite");
    assert.ok(summary(broken.output).failed > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
