/** The layer check (scripts/layers.ts) catches what it names, on a planted graph and on files. */
import assert from "node:assert/strict";
import { filesUnder, type Graph, type Import, importGraph, violations } from "../scripts/layers.ts";

const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** A graph from `file: [imports]`; `npm:…`/`node:…` are packages, `dyn:` marks a dynamic import. */
function graph(edges: Record<string, string[]>): Graph {
  const g = new Map<string, Import[]>();
  for (const [from, tos] of Object.entries(edges)) {
    g.set(
      from,
      tos.map((t) => {
        const dynamic = t.startsWith("dyn:");
        const to = dynamic ? t.slice(4) : t;
        return { to, external: /^(npm:|node:)/.test(to), dynamic };
      }),
    );
  }
  return g;
}

Deno.test("layers: allowed imports pass", () => {
  const g = graph({
    "mod.ts": ["src/system.ts", "dyn:adapters/libsql/mod.ts"],
    "spi.ts": ["src/journal/types.ts"],
    "src/system.ts": ["src/dispatch/dispatch.ts", "src/errors.ts"],
    "src/dispatch/dispatch.ts": ["src/actor/ref.ts", "src/dispatch/call.ts", "npm:jose"],
    "src/dispatch/call.ts": ["src/util/async.ts"],
    "src/actor/ref.ts": ["src/actor/types.ts"],
    "src/actor/types.ts": [],
    "src/util/async.ts": ["src/errors.ts"],
    "src/util/async_test.ts": ["src/util/async.ts", "src/util/_testing.ts", "node:assert/strict"],
    "src/util/_testing.ts": ["src/errors.ts"],
    "src/errors.ts": [],
    "src/errors_test.ts": ["src/errors.ts"],
    "src/journal/types.ts": [],
    "adapters/libsql/mod.ts": [
      "mod.ts",
      "spi.ts",
      "adapters/libsql/journal.ts",
      "npm:@libsql/client",
    ],
    "adapters/libsql/journal.ts": ["spi.ts"],
    "adapters/libsql/journal_test.ts": ["adapters/libsql/mod.ts", "tests/_sqlite.ts"],
    "adapters/testing/systems.ts": ["mod.ts", "adapters/nats/mod.ts"],
    "adapters/nats/mod.ts": ["spi.ts"],
  });
  assert.deepEqual(violations(g), []);
});

Deno.test("layers: an upward import, a planted cycle and every outward import are caught", () => {
  const g = graph({
    // upward: mesh imports dispatch; a test under src/ imports the composition root
    "src/mesh/types.ts": ["src/dispatch/call.ts"],
    "src/dispatch/call.ts": [],
    "src/store/store_test.ts": ["src/system.ts"],
    "src/system.ts": [],
    // a cycle of three files inside one folder, and one between two adapter files
    "src/actor/a.ts": ["src/actor/b.ts"],
    "src/actor/b.ts": ["src/actor/c.ts"],
    "src/actor/c.ts": ["src/actor/a.ts"],
    "adapters/nats/kv.ts": ["adapters/nats/connection.ts", "spi.ts"],
    "adapters/nats/connection.ts": ["adapters/nats/kv.ts"],
    // outward
    "src/codec/json_test.ts": ["tests/helpers.ts"],
    "src/config/kv.ts": ["npm:@nats-io/kv"],
    "src/gone/x.ts": [],
    "adapters/hono/gateway.ts": ["src/auth/verify.ts", "mod.ts"],
    "adapters/testing/nats_server.ts": ["adapters/nats/mesh.ts"],
    "adapters/nats/mesh_test.ts": ["src/directory/leases.ts", "tests/cluster_suite.ts"],
    "mod.ts": ["adapters/libsql/mod.ts"],
    "spi.ts": [],
    "spi_extra_not_covered.ts": ["src/system.ts"],
  });
  const found = violations(g).map((v) => `${v.file}: ${v.message}`);
  const expect = [
    /^src\/mesh\/types\.ts: src\/mesh imports src\/dispatch\/call\.ts, of src\/dispatch, a layer above it$/,
    /^src\/store\/store_test\.ts: src\/store imports src\/system\.ts, of src\/system\.ts, a layer above it$/,
    /^src\/actor\/a\.ts: a file cycle: src\/actor\/a\.ts ↔ src\/actor\/b\.ts ↔ src\/actor\/c\.ts$/,
    /^adapters\/nats\/connection\.ts: a file cycle: adapters\/nats\/connection\.ts ↔ adapters\/nats\/kv\.ts$/,
    /^src\/codec\/json_test\.ts: a file of src\/ imports the test helper tests\/helpers\.ts$/,
    /^src\/config\/kv\.ts: src\/ imports the adapter package "npm:@nats-io\/kv"$/,
    /^src\/gone\/x\.ts: .*src\/gone is not a layer/,
    /^adapters\/hono\/gateway\.ts: adapters\/hono imports src\/auth\/verify\.ts: adapters import only/,
    /^adapters\/testing\/nats_server\.ts: adapters\/testing imports adapters\/nats\/mesh\.ts/,
    /^adapters\/nats\/mesh_test\.ts: adapters\/nats imports src\/directory\/leases\.ts/,
    /^mod\.ts: mod\.ts imports adapters\/libsql\/mod\.ts \(only a dynamic import of an adapter\)$/,
  ];
  for (const re of expect) {
    assert.ok(found.some((f) => re.test(f)), `expected ${re} among:\n${found.join("\n")}`);
  }
  assert.equal(found.length, expect.length, `no more than those:\n${found.join("\n")}`);
});

Deno.test("layers: deno info's graph of planted files shows the cycle and the upward import", async () => {
  const dir = await Deno.makeTempDir({ prefix: "troupe-layers-" });
  try {
    const write = async (path: string, text: string) => {
      await Deno.mkdir(`${dir}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
      await Deno.writeTextFile(`${dir}/${path}`, text);
    };
    await write(
      "src/mesh/types.ts",
      'import type { Call } from "../dispatch/call.ts";\nexport type T = Call;\n',
    );
    await write(
      "src/dispatch/call.ts",
      'import { b } from "./route.ts";\nexport type Call = 1;\nexport const a = () => b;\n',
    );
    await write(
      "src/dispatch/route.ts",
      'import { a } from "./call.ts";\nexport const b = () => a;\n',
    );
    await write("src/util/async.ts", "export const ok = 1;\n");
    const files = await filesUnder(dir, "src");
    const found = violations(await importGraph(dir, files)).map((v) => `${v.file}: ${v.message}`);
    assert.deepEqual(found, [
      "src/mesh/types.ts: src/mesh imports src/dispatch/call.ts, of src/dispatch, a layer above it",
      "src/dispatch/call.ts: a file cycle: src/dispatch/call.ts ↔ src/dispatch/route.ts",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("layers: this repository passes", async () => {
  const files = [
    "mod.ts",
    "spi.ts",
    ...await filesUnder(repo, "src"),
    ...await filesUnder(repo, "adapters"),
  ];
  const g = await importGraph(repo, files);
  assert.ok(g.has("src/system.ts") && g.has("adapters/nats/mesh.ts"), "the graph covers both");
  assert.deepEqual(violations(g), []);
});
