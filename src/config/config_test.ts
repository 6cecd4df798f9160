import assert from "node:assert/strict";
import type { Logger } from "../util/log.ts";
import { ConfigError, createConfig } from "./config.ts";
import type { ConfigSource, ConfigSourceContext } from "./types.ts";

/** A source the test drives by hand. */
function manual(name: string, initial: Record<string, unknown>) {
  let context: ConfigSourceContext | undefined;
  const source: ConfigSource = {
    name,
    start(c) {
      context = c;
      c.update(initial);
      return { stop() {} };
    },
  };
  return {
    source,
    push: (doc: unknown) => context!.update(doc),
    fail: (err: unknown) => context!.fail(err),
  };
}

function capture(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return {
    warnings,
    debug() {},
    info() {},
    warn: (m, d) => void warnings.push(d ? `${m} ${JSON.stringify(d)}` : m),
    error: (m, d) => void warnings.push(d ? `${m} ${JSON.stringify(d)}` : m),
  };
}

Deno.test("later sources win, objects merge deeply, defaults are under everything", async () => {
  const a = manual("a", { db: { host: "a", port: 1 }, list: [1, 2], only: "a" });
  const b = manual("b", { db: { host: "b" }, list: [3] });
  await using config = await createConfig({
    sources: [a.source, b.source],
    defaults: { db: { host: "d", pool: 10 }, limits: { maxTransfer: 1000 } },
  });
  assert.deepEqual(config.get(""), {
    db: { host: "b", port: 1, pool: 10 },
    list: [3], // arrays replace
    only: "a",
    limits: { maxTransfer: 1000 },
  });
  assert.equal(config.get("db.host"), "b");
  assert.equal(config.get("list.0"), 3);
  assert.equal(config.get("missing.path"), undefined);
  assert.equal(config.version, 1);
});

Deno.test("get(path, fallback) returns the fallback when missing or of another kind", async () => {
  const log = capture();
  const a = manual("a", { n: 5, s: "text", o: { x: 1 }, arr: [1] });
  await using config = await createConfig({ sources: [a.source] }, { logger: log });
  const n: number = config.get("n", 0);
  assert.equal(n, 5);
  assert.equal(config.get("missing", 7), 7);
  assert.equal(config.get("s", 3), 3); // a string where a number is expected
  assert.deepEqual(config.get("arr", {}), {}); // an array is not an object
  assert.deepEqual(config.get("o", {}), { x: 1 });
  assert.equal(config.get("n", null), 5); // null/undefined fallbacks accept any kind
  assert.equal(log.warnings.length, 2);
  assert.match(log.warnings[0]!, /"s" is a\(n\) string where its fallback is a\(n\) number/);
  config.get("s", 3);
  assert.equal(log.warnings.length, 2, "one warning per path and version");
});

Deno.test("get() is typed by its fallback", async () => {
  await using config = await createConfig({ defaults: { n: 1, s: "x", f: false } });
  const n: number = config.get("n", 1000);
  const s: string = config.get("s", "default");
  const f: boolean = config.get("f", true);
  const o: { a: number[] } = config.get("o", { a: [1] });
  // @ts-expect-error a number fallback gives a number
  const bad: string = config.get("n", 1000);
  // @ts-expect-error without a fallback the value is unknown
  const unknownValue: number = config.get("n");
  assert.deepEqual([n, s, f, o, bad, unknownValue], [1, "x", false, { a: [1] }, 1, 1]);
});

Deno.test("the tree is frozen and a view keeps its version", async () => {
  const a = manual("a", { limits: { max: 1 } });
  await using config = await createConfig({ sources: [a.source] });
  const view = config.view();
  assert.throws(() => {
    (config.get("limits") as { max: number }).max = 2;
  }, TypeError);
  a.push({ limits: { max: 2 } });
  assert.equal(view.get("limits.max"), 1);
  assert.equal(view.version, 1);
  assert.equal(config.get("limits.max"), 2);
  assert.equal(config.version, 2);
  a.push({ limits: { max: 2 } }); // same value: no new version
  assert.equal(config.version, 2);
});

Deno.test("watch() fires once per effective change of its subtree, from any source", async () => {
  const a = manual("a", { limits: { max: 1 }, other: 1 });
  const b = manual("b", {});
  await using config = await createConfig({ sources: [a.source, b.source] });
  const calls: [unknown, unknown][] = [];
  const w = config.watch("limits", (value, previous) => calls.push([value, previous]));
  a.push({ limits: { max: 1 }, other: 2 }); // another subtree
  a.push({ limits: { max: 1 }, other: 2 }); // nothing
  assert.equal(calls.length, 0);
  a.push({ limits: { max: 2 }, other: 2 });
  b.push({ limits: { max: 3 } }); // from another source
  b.push({ limits: { max: 3 } }); // the same again
  a.push({ limits: { max: 9 }, other: 2 }); // hidden by b: no effective change
  assert.deepEqual(calls, [[{ max: 2 }, { max: 1 }], [{ max: 3 }, { max: 2 }]]);
  w.stop();
  b.push({ limits: { max: 4 } });
  assert.equal(calls.length, 2);
});

Deno.test("a watcher that throws is logged and does not stop the others", async () => {
  const log = capture();
  const a = manual("a", { x: 1 });
  await using config = await createConfig({ sources: [a.source] }, { logger: log });
  let seen = 0;
  config.watch("x", () => {
    throw new Error("boom");
  });
  config.watch("x", () => seen++);
  a.push({ x: 2 });
  assert.equal(seen, 1);
  assert.match(log.warnings.join("\n"), /watcher of "x" threw.*boom/);
});

Deno.test("validate refusing an update keeps the last good tree; a good one recovers", async () => {
  const log = capture();
  const a = manual("a", { max: 5 });
  await using config = await createConfig({
    sources: [a.source],
    validate: (tree) => {
      if (typeof tree.max !== "number" || tree.max > 100) throw new Error("max must be ≤ 100");
      return { ...tree, checked: true };
    },
  }, { logger: log });
  assert.deepEqual(config.get(""), { max: 5, checked: true });
  assert.equal(a.push({ max: 1000 }), false);
  assert.equal(config.get("max"), 5);
  const [h] = config.health();
  assert.equal(h!.ok, false);
  assert.match(h!.error!, /refused by validate: max must be ≤ 100/);
  assert.match(log.warnings.join("\n"), /"a" refused, keeping its last good value/);
  assert.equal(a.push({ max: 50 }), true);
  assert.equal(config.get("max"), 50);
  assert.equal(config.health()[0]!.ok, true);
  assert.equal(config.health()[0]!.error, undefined);
});

Deno.test("a source's bad update (fail, a non-object) keeps its last good value", async () => {
  const a = manual("a", { x: 1 });
  await using config = await createConfig({ sources: [a.source] }, { logger: capture() });
  a.fail(new Error("cannot reach the flag service"));
  assert.equal(config.get("x"), 1);
  assert.deepEqual(
    config.health().map(({ source, ok, error }) => ({ source, ok, error })),
    [{ source: "a", ok: false, error: "cannot reach the flag service" }],
  );
  assert.equal(a.push([1, 2]), false);
  assert.match(config.health()[0]!.error!, /array, not an object/);
  a.push({ x: 2 });
  assert.equal(config.get("x"), 2);
  assert.equal(config.health()[0]!.ok, true);
});

Deno.test("validate refusing the first tree fails the start with a ConfigError", async () => {
  await assert.rejects(
    createConfig({
      defaults: { a: 1 },
      validate: () => {
        throw new Error("nope");
      },
    }),
    (err) => err instanceof ConfigError && /refused at start by validate: nope/.test(err.message),
  );
});

Deno.test("a source failing to start fails the start and stops the others", async () => {
  let stopped = 0;
  const good: ConfigSource = {
    name: "good",
    start: (c) => (c.update({}), { stop: () => void stopped++ }),
  };
  const bad: ConfigSource = {
    name: "bad",
    start: () => Promise.reject(new Error("unreachable")),
  };
  await assert.rejects(
    createConfig({ sources: [good, bad] }),
    (err) => err instanceof ConfigError && err.source === "bad" && /unreachable/.test(err.message),
  );
  assert.equal(stopped, 1);
});

Deno.test("secret values are redacted in warnings, health, thrown errors and toJSON", async () => {
  const log = capture();
  const a = manual("a", {
    db: { password: "hunter2-old", user: "app" },
    api: { token: "tok-123" },
  });
  await using config = await createConfig({
    sources: [a.source],
    secrets: ["db.password", "**.token"],
    validate: (tree) => {
      const db = tree.db as { password: string };
      if (db.password.length > 12) throw new Error(`bad config ${JSON.stringify(tree)}`);
      return tree;
    },
  }, { logger: log });
  assert.deepEqual(JSON.parse(JSON.stringify(config)), {
    db: { password: "[redacted]", user: "app" },
    api: { token: "[redacted]" },
  });
  a.push({ db: { password: "hunter2-much-too-long", user: "app" }, api: { token: "tok-123" } });
  const error = config.health()[0]!.error!;
  assert.match(error, /\[redacted\]/);
  assert.match(error, /"user":"app"/);
  for (const text of [error, log.warnings.join("\n")]) {
    assert.doesNotMatch(text, /hunter2|tok-123/);
  }
  a.fail(new Error("lost connection, last password hunter2-old"));
  assert.equal(config.health()[0]!.error, "lost connection, last password [redacted]");
  await assert.rejects(
    createConfig({
      defaults: { db: { password: "s3cret!" } },
      secrets: ["db.password"],
      validate: (t) => {
        throw new Error(`refusing ${JSON.stringify(t)}`);
      },
    }),
    (err: Error) => !err.message.includes("s3cret!") && err.message.includes("[redacted]"),
  );
});

Deno.test("set() needs a writable source", async () => {
  await using config = await createConfig({ defaults: { a: 1 } });
  await assert.rejects(config.set("a", 2), TypeError);
});

Deno.test("close() stops the sources and watchers", async () => {
  let stopped = 0;
  const src: ConfigSource = {
    name: "s",
    start: (c) => (c.update({ a: 1 }), { stop: () => void stopped++ }),
  };
  const config = await createConfig({ sources: [src] });
  await config.close();
  await config.close();
  assert.equal(stopped, 1);
});
