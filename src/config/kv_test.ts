import assert from "node:assert/strict";
import type { Logger } from "../util/log.ts";
import { inProcessMesh } from "../mesh/in_process.ts";
import type { Mesh } from "../mesh/types.ts";
import { type VirtualClock, virtualClock } from "../util/virtual_clock.ts";
import { ConfigError, createConfig, type ManagedConfig } from "./config.ts";
import type { ConfigOptions } from "./types.ts";
import { fromKv } from "./kv.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const clock: VirtualClock = virtualClock();

/** `n` configs over one mesh, each on its own connection, closed together. */
async function nodes(mesh: Mesh, n: number, options: ConfigOptions) {
  const conns = await Promise.all(
    Array.from({ length: n }, (_, i) => mesh.connect({ node: `n${i}`, clock })),
  );
  const configs: ManagedConfig[] = [];
  for (const [i, conn] of conns.entries()) {
    configs.push(
      await createConfig(options, {
        node: `n${i}`,
        mesh: conn,
        prefix: mesh.prefix,
        logger: quiet,
        clock,
      }),
    );
  }
  return {
    configs,
    conns,
    async [Symbol.asyncDispose]() {
      await Promise.all(configs.map((c) => c.close()));
      await Promise.all(conns.map((c) => c.close()));
    },
  };
}

function kvRevision(config: ManagedConfig): number | undefined {
  return config.health().find((h) => h.source.startsWith("kv:"))?.revision;
}

Deno.test("fromKv(): set() on one node is seen by all at once, at the same revision", async () => {
  const mesh = inProcessMesh({ clock });
  await using cluster = await nodes(mesh, 3, {
    sources: [fromKv("app-config")],
    defaults: { limits: { maxTransfer: 1000 } },
  });
  const [a, b, c] = cluster.configs as [ManagedConfig, ManagedConfig, ManagedConfig];
  const t0 = clock.monotonic();
  const revision = await a.set("limits.maxTransfer", 500);
  assert.equal(a.get("limits.maxTransfer"), 500, "the writer reads its write at once");
  await clock.advance(0);
  assert.ok([b, c].every((x) => x.get("limits.maxTransfer") === 500), "every node applied it");
  assert.equal(clock.monotonic(), t0, "with no time passing (in-process)");
  assert.deepEqual([a, b, c].map(kvRevision), [revision, revision, revision]);
});

Deno.test("fromKv(): a node that starts later loads what is there; last write wins by revision", async () => {
  const mesh = inProcessMesh({ clock });
  await using first = await nodes(mesh, 1, { sources: [fromKv("cfg")] });
  const [a] = first.configs as [ManagedConfig];
  await a.set("db", { host: "h1", port: 1 });
  await a.set("db.host", "h2"); // a child after its parent refines it
  assert.deepEqual(a.get("db"), { host: "h2", port: 1 });
  await using second = await nodes(mesh, 1, { sources: [fromKv("cfg")] });
  const [b] = second.configs as [ManagedConfig];
  assert.deepEqual(b.get("db"), { host: "h2", port: 1 });
  const rev = await b.set("db", { host: "h3" }); // a parent after its child replaces it
  await clock.advance(0);
  assert.equal(kvRevision(a), rev, "node a applied the write");
  assert.deepEqual(a.get("db"), { host: "h3" });
  assert.deepEqual(b.get("db"), { host: "h3" });
});

Deno.test("fromKv(): set() that validate refuses writes nothing", async () => {
  const mesh = inProcessMesh({ clock });
  await using cluster = await nodes(mesh, 1, {
    sources: [fromKv("cfg")],
    secrets: ["db.password"],
    validate: (t) => {
      const max = (t.limits as { max?: number } | undefined)?.max ?? 0;
      if (max > 10) throw new Error(`max ${max} is over 10 in ${JSON.stringify(t)}`);
      return t;
    },
  });
  const [a] = cluster.configs as [ManagedConfig];
  await a.set("db.password", "pa55word");
  await assert.rejects(
    a.set("limits.max", 11),
    (err) =>
      err instanceof ConfigError && /refused by validate: max 11 is over 10/.test(err.message) &&
      !err.message.includes("pa55word"),
  );
  const conn = cluster.conns[0]!;
  const bucket = await conn.kv(`${mesh.prefix}_cfg_cfg`);
  assert.deepEqual(await bucket.keys(), ["db.password"]);
  await assert.rejects(a.set("a b", 1), TypeError);
  await assert.rejects(a.set("", {}), TypeError);
});

Deno.test("fromKv(): an entry that is not JSON keeps the last good value and shows in health", async () => {
  const mesh = inProcessMesh({ clock });
  await using cluster = await nodes(mesh, 2, { sources: [fromKv("cfg")] });
  const [a, b] = cluster.configs as [ManagedConfig, ManagedConfig];
  await a.set("x", 1);
  const bucket = await cluster.conns[0]!.kv(`${mesh.prefix}_cfg_cfg`);
  const bad = await bucket.put("x", new TextEncoder().encode("{not json"));
  await clock.advance(0);
  assert.equal(kvRevision(b), bad, "node b saw the bad entry");
  assert.equal(b.get("x"), 1);
  assert.deepEqual(
    b.health().map(({ source, ok, error }) => ({ source, ok, error })),
    [{ source: "kv:cfg", ok: false, error: 'Entry "x" is not JSON' }],
  );
  const good = await a.set("x", 2);
  await clock.advance(0);
  assert.equal(kvRevision(b), good, "node b recovered");
  assert.equal(b.get("x"), 2);
  assert.equal(b.health()[0]!.ok, true);
});

Deno.test("fromKv() needs a mesh and a valid bucket name", async () => {
  assert.throws(() => fromKv("a.b"), TypeError);
  await assert.rejects(
    createConfig({ sources: [fromKv("cfg")] }),
    (err) => err instanceof ConfigError && /needs a mesh/.test(err.message),
  );
});
