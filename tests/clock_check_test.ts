import assert from "node:assert/strict";
import { join } from "node:path";
import { check, codeOf, directCalls } from "../scripts/clock_check.ts";

const root = join(import.meta.dirname!, "..");

Deno.test("clock check: no direct use of the host's time is left in src/ and adapters/", async () => {
  const found = await check(root);
  assert.deepEqual(
    found.map((f) => `${f.file}:${f.line}: ${f.text}`),
    [],
    "go through the node's Clock, or say why with a `real-time:` comment",
  );
});

Deno.test("clock check: finds each kind of direct call, and only in code", () => {
  const source = [
    "const a = performance.now();",
    "const b = Date.now();",
    "const c = new Date();",
    "const d = setTimeout(() => {}, 5);",
    "globalThis.setInterval(f, 1);",
    "clearTimeout(d); clearInterval(x);",
    "Deno.unrefTimer(t);",
    "const now = options.now ?? Date.now;",
    "// Date.now() in a comment is fine",
    "/** performance.now() in JSDoc: fine */",
    'const s = "setTimeout(f, 1) in a string is fine";',
    "const t = `browser code: setTimeout(go, 1); ${Date.now()}`;",
    "clock.setTimeout(f, 1); this.#clock.monotonic(); new Date(at);",
    "// real-time: a macrotask turn, not a wait",
    "setTimeout(f, 0);",
    "setTimeout(g, 0); // real-time: same line",
  ].join("\n");
  const found = directCalls("x.ts", source);
  assert.deepEqual(found.map((f) => [f.line, f.call]), [
    [1, "performance.now"],
    [2, "Date.now"],
    [3, "new Date()"],
    [4, "setTimeout"],
    [5, "setInterval"],
    [6, "clearTimeout"],
    [6, "clearInterval"],
    [7, "Deno.unrefTimer"],
    [8, "Date.now"],
    [12, "Date.now"], // inside a template literal's ${…}: code
  ]);
});

Deno.test("clock check: a planted call in a production file fails it; tests and allowed files do not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "src/actor"), { recursive: true });
    await Deno.mkdir(join(dir, "adapters/nats"), { recursive: true });
    await Deno.writeTextFile(join(dir, "src/actor/ok.ts"), "export const t = clock.now();\n");
    await Deno.writeTextFile(join(dir, "src/actor/bad.ts"), "\nexport const t = Date.now();\n");
    await Deno.writeTextFile(join(dir, "src/actor/bad_test.ts"), "Date.now();\n");
    await Deno.writeTextFile(join(dir, "adapters/nats/conn.ts"), "setTimeout(f, 1);\n");
    const found = await check(dir);
    assert.deepEqual(found.map((f) => `${f.file}:${f.line}`), ["src/actor/bad.ts:2"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("clock check: codeOf keeps line numbers and the comments of each line", () => {
  const { code, comments } = codeOf('a(); // one\n/* two\nthree */ b("//x");\n');
  assert.equal(code.split("\n").length, 4);
  assert.match(comments.get(1)!, /one/);
  assert.match(comments.get(3)!, /three/);
  assert.ok(!code.includes("//x"));
});
