import assert from "node:assert/strict";
import type { Logger } from "../util/log.ts";
import { within } from "../util/_testing.ts";
import { ConfigError, createConfig, type ManagedConfig } from "./config.ts";
import { fromFile, parseJson } from "./file.ts";

function capture(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return {
    warnings,
    debug() {},
    info() {},
    warn: (m) => void warnings.push(m),
    error: (m) => void warnings.push(m),
  };
}

/** Resolves with the next change of the whole tree (bounded by `timeout`). */
function nextChange(config: ManagedConfig, timeout = 1_000): Promise<unknown> {
  const changed = Promise.withResolvers<unknown>();
  const w = config.watch("", (value) => changed.resolve(value));
  return within(changed.promise, timeout, "a config change").finally(() => w.stop());
}

/** Resolves once the health of the first source changes to `ok` (bounded). */
async function nextHealth(config: ManagedConfig, ok: boolean, timeout = 1_000): Promise<string> {
  const end = performance.now() + timeout;
  while (config.health()[0]!.ok !== ok) {
    if (performance.now() > end) throw new Error(`health did not become ok=${ok} in ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return config.health()[0]!.error ?? "";
}

async function tempDir(): Promise<string & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "troupe-cfg-" });
  return Object.assign(dir, {
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  }) as string & AsyncDisposable;
}

Deno.test("fromFile() reloads a file written in place within 1 s", async () => {
  await using dir = await tempDir();
  const path = `${dir}/config.json`;
  await Deno.writeTextFile(path, JSON.stringify({ limits: { maxTransfer: 1 } }));
  await using config = await createConfig({ sources: [fromFile(path)] });
  assert.equal(config.get("limits.maxTransfer"), 1);
  const changed = nextChange(config);
  await Deno.writeTextFile(path, JSON.stringify({ limits: { maxTransfer: 2 } }));
  await changed;
  assert.equal(config.get("limits.maxTransfer"), 2);
});

Deno.test("fromFile() reloads after an editor's write-to-temp-then-rename within 1 s", async () => {
  await using dir = await tempDir();
  const path = `${dir}/config.json`;
  await Deno.writeTextFile(path, JSON.stringify({ v: 1 }));
  await using config = await createConfig({ sources: [fromFile(path)] });
  for (const v of [2, 3]) { // twice: the watch survives the file being replaced
    const changed = nextChange(config);
    const t0 = performance.now();
    await Deno.writeTextFile(`${dir}/.config.json.swp`, JSON.stringify({ v }));
    await Deno.rename(`${dir}/.config.json.swp`, path);
    await changed;
    assert.ok(performance.now() - t0 < 1_000);
    assert.equal(config.get("v"), v);
  }
});

Deno.test("fromFile(): a malformed file keeps the last good value, shows in health, recovers", async () => {
  await using dir = await tempDir();
  const path = `${dir}/config.json`;
  await Deno.writeTextFile(path, JSON.stringify({ db: { password: "hunter2" }, v: 1 }));
  const log = capture();
  await using config = await createConfig({
    sources: [fromFile(path)],
    secrets: ["db.password"],
  }, { logger: log });
  await Deno.writeTextFile(path, '{ "db": { "password": "hunter2" }, "v": 2,, }');
  const error = await nextHealth(config, false);
  assert.match(error, /Cannot parse ".*config\.json"/);
  assert.doesNotMatch(error, /hunter2/);
  assert.equal(config.get("v"), 1);
  assert.match(log.warnings.join("\n"), /config\.json" refused, keeping its last good value/);
  assert.doesNotMatch(log.warnings.join("\n"), /hunter2/);
  const changed = nextChange(config);
  await Deno.writeTextFile(path, JSON.stringify({ db: { password: "hunter2" }, v: 3 }));
  await changed;
  assert.equal(config.get("v"), 3);
  assert.deepEqual(config.health()[0]!.ok, true);
  assert.equal(config.health()[0]!.error, undefined);
});

Deno.test("fromFile(): a deleted file keeps the last good value until it is back", async () => {
  await using dir = await tempDir();
  const path = `${dir}/config.json`;
  await Deno.writeTextFile(path, JSON.stringify({ v: 1 }));
  await using config = await createConfig({ sources: [fromFile(path)] }, { logger: capture() });
  await Deno.remove(path);
  assert.match(await nextHealth(config, false), /does not exist/);
  assert.equal(config.get("v"), 1);
  await Deno.writeTextFile(path, JSON.stringify({ v: 1 }));
  await nextHealth(config, true);
  assert.equal(config.get("v"), 1);
});

Deno.test("fromFile(): validate refusing the file keeps the last good value", async () => {
  await using dir = await tempDir();
  const path = `${dir}/config.json`;
  await Deno.writeTextFile(path, JSON.stringify({ max: 1 }));
  await using config = await createConfig({
    sources: [fromFile(path)],
    validate: (t) => {
      if ((t.max as number) > 10) throw new Error("max too big");
      return t;
    },
  }, { logger: capture() });
  await Deno.writeTextFile(path, JSON.stringify({ max: 11 }));
  assert.match(await nextHealth(config, false), /refused by validate: max too big/);
  assert.equal(config.get("max"), 1);
});

Deno.test("fromFile() at start: missing or malformed fails, optional missing is empty", async () => {
  await using dir = await tempDir();
  await assert.rejects(
    createConfig({ sources: [fromFile(`${dir}/nope.json`)] }),
    (err) => err instanceof ConfigError && /does not exist/.test(err.message),
  );
  await Deno.writeTextFile(`${dir}/bad.json`, "[1, 2]");
  await assert.rejects(
    createConfig({ sources: [fromFile(`${dir}/bad.json`)] }),
    (err) => err instanceof ConfigError && /does not hold an object/.test(err.message),
  );
  await using config = await createConfig({
    sources: [fromFile(`${dir}/nope.json`, { optional: true })],
    defaults: { a: 1 },
  });
  assert.deepEqual(config.get(""), { a: 1 });
  const changed = nextChange(config);
  await Deno.writeTextFile(`${dir}/nope.json`, JSON.stringify({ a: 2 }));
  await changed;
  assert.equal(config.get("a"), 2);
});

Deno.test("fromFile() takes a parser for other formats", async () => {
  await using dir = await tempDir();
  const path = `${dir}/config.ini`;
  await Deno.writeTextFile(path, "a=1\nb=two\n");
  const parse = (text: string) =>
    Object.fromEntries(text.trim().split("\n").map((l) => l.split("=") as [string, string]));
  await using config = await createConfig({ sources: [fromFile(path, { parse })] });
  assert.deepEqual(config.get(""), { a: "1", b: "two" });
});

Deno.test("parseJson() does not quote the text in its errors", () => {
  assert.throws(() => parseJson('{"password": "hunter2" x}'), (err: Error) => {
    assert.doesNotMatch(err.message, /hunter2/);
    return err instanceof SyntaxError;
  });
  assert.deepEqual(parseJson('{"a":1}'), { a: 1 });
});

Deno.test("fromFile() reads YAML (by extension) and reports YAML errors without quoting", async () => {
  await using dir = await tempDir();
  const path = `${dir}/config.yaml`;
  await Deno.writeTextFile(path, "limits:\n  maxTransfer: 500\ndb:\n  password: hunter2\n");
  await using config = await createConfig({
    sources: [fromFile(path)],
    secrets: ["db.password"],
  }, { logger: capture() });
  assert.equal(config.get("limits.maxTransfer", 0), 500);
  await Deno.writeTextFile(path, "limits:\n  maxTransfer: [500\ndb:\n  password: hunter3\n");
  const error = await nextHealth(config, false);
  assert.match(error, /Invalid YAML \([A-Z_]+\) at line \d+, column \d+/);
  assert.doesNotMatch(error, /hunter/);
  assert.equal(config.get("limits.maxTransfer", 0), 500);
  const changed = nextChange(config);
  await Deno.writeTextFile(path, "limits: { maxTransfer: 7 }\n");
  await changed;
  assert.equal(config.get("limits.maxTransfer", 0), 7);
  assert.equal(config.health()[0]!.ok, true);
});

Deno.test("fromFile() on a symlink into another directory sees edits of the target", async () => {
  await using a = await tempDir();
  await using b = await tempDir();
  await using c = await tempDir();
  await Deno.writeTextFile(`${b}/real.json`, JSON.stringify({ v: 1 }));
  await Deno.symlink(`${b}/real.json`, `${a}/config.json`);
  await using config = await createConfig({ sources: [fromFile(`${a}/config.json`)] });
  assert.equal(config.get("v"), 1);
  // an edit in place of the target: no event in the link's directory
  let changed = nextChange(config);
  await Deno.writeTextFile(`${b}/real.json`, JSON.stringify({ v: 2 }));
  await changed;
  assert.equal(config.get("v"), 2);
  // the link pointed elsewhere (a new link renamed over it), then that target edited
  await Deno.writeTextFile(`${c}/other.json`, JSON.stringify({ v: 3 }));
  changed = nextChange(config);
  await Deno.symlink(`${c}/other.json`, `${a}/.config.json.new`);
  await Deno.rename(`${a}/.config.json.new`, `${a}/config.json`);
  await changed;
  assert.equal(config.get("v"), 3);
  changed = nextChange(config);
  await Deno.writeTextFile(`${c}/other.json`, JSON.stringify({ v: 4 }));
  await changed;
  assert.equal(config.get("v"), 4);
  assert.deepEqual(config.health().map((h) => h.ok), [true]);
});

Deno.test("fromFile() on a relative symlink chain (Kubernetes' ..data layout) sees edits and swaps", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir}/..v1`);
  await Deno.writeTextFile(`${dir}/..v1/config.json`, JSON.stringify({ v: 1 }));
  await Deno.symlink("..v1", `${dir}/..data`);
  await Deno.symlink("..data/config.json", `${dir}/config.json`);
  await using config = await createConfig({ sources: [fromFile(`${dir}/config.json`)] });
  assert.equal(config.get("v"), 1);
  let changed = nextChange(config);
  await Deno.writeTextFile(`${dir}/..v1/config.json`, JSON.stringify({ v: 2 }));
  await changed;
  assert.equal(config.get("v"), 2);
  // the swap: a new version directory, ..data renamed over, the old one removed
  await Deno.mkdir(`${dir}/..v2`);
  await Deno.writeTextFile(`${dir}/..v2/config.json`, JSON.stringify({ v: 3 }));
  changed = nextChange(config);
  await Deno.symlink("..v2", `${dir}/..data_tmp`);
  await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
  await Deno.remove(`${dir}/..v1`, { recursive: true });
  await changed;
  assert.equal(config.get("v"), 3);
  changed = nextChange(config);
  await Deno.writeTextFile(`${dir}/..v2/config.json`, JSON.stringify({ v: 4 }));
  await changed;
  assert.equal(config.get("v"), 4);
  assert.deepEqual(config.health().map((h) => h.ok), [true]);
});

Deno.test("fromFile(): health() is not ok once the file's directory is gone", async () => {
  const parent = await tempDir();
  await using _ = parent;
  const dir = `${parent}/conf`;
  await Deno.mkdir(dir);
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ v: 1 }));
  await using config = await createConfig({ sources: [fromFile(`${dir}/config.json`)] }, {
    logger: capture(),
  });
  assert.equal(config.health()[0]!.ok, true);
  await Deno.remove(dir, { recursive: true });
  const error = await nextHealth(config, false, 2_000);
  assert.match(error, /does not exist|not seen|stopped/);
  assert.equal(config.get("v"), 1, "the last good value stays");
});
