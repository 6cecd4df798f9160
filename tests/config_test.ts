/** `system.config` and `ctx.config` on whole systems: in-process and on a real NATS cluster. */
import assert from "node:assert/strict";
import {
  ConfigError,
  createSystem,
  defineActor,
  fromEnv,
  fromKv,
  inProcessMesh,
  type System,
} from "../mod.ts";
import { startNatsCluster, startSystems } from "../adapters/testing/mod.ts";
import { waitFor, within } from "./helpers.ts";

const Reader = defineActor({
  name: "reader",
  handlers: {
    read: (ctx, path: string) => ctx.config.get(path),
  },
});

function kvRevision(system: System): number | undefined {
  return system.config.health().find((h) => h.source.startsWith("kv:"))?.revision;
}

/** set() on one node, then every node (and the client) holds it within 1 s at one revision. */
async function setSeenEverywhere(systems: readonly System[]): Promise<void> {
  const writer = systems[0]!;
  for (const value of [500, 250]) {
    const t0 = performance.now();
    const revision = await writer.config.set("limits.maxTransfer", value);
    assert.equal(writer.config.get("limits.maxTransfer", 0), value, "the writer reads its write");
    await waitFor(
      () => systems.every((s) => s.config.get("limits.maxTransfer", 0) === value),
      1_000,
      `every node to see limits.maxTransfer = ${value}`,
    );
    assert.ok(performance.now() - t0 < 1_000);
    assert.deepEqual(systems.map(kvRevision), systems.map(() => revision));
  }
}

Deno.test("system.config: a set() is seen by every node within 1 s (in-process mesh)", async () => {
  await using cluster = await startSystems({
    actors: [Reader],
    nodes: 3,
    system: {
      logger: "error",
      config: { sources: [fromKv("app-config")], defaults: { limits: { maxTransfer: 1000 } } },
    },
  });
  const all = [...cluster.nodes, cluster.client];
  assert.ok(all.every((s) => s.config.get("limits.maxTransfer", 0) === 1000));
  await setSeenEverywhere(all);
  // ctx.config on whichever node runs the actor sees it too
  assert.equal(await cluster.client.ref(Reader, "r1").ask("read", "limits.maxTransfer"), 250);
});

Deno.test({
  name: "system.config: a set() is seen by every node within 1 s (3-server NATS cluster)",
  async fn() {
    await using nats = await startNatsCluster({ servers: 3 });
    await using cluster = await startSystems({
      actors: [Reader],
      nodes: 3,
      nats,
      system: { logger: "error", config: { sources: [fromKv("app-config")] } },
    });
    await setSeenEverywhere([...cluster.nodes, cluster.client]);
  },
});

Deno.test("ctx.config is the view at the turn's start, even when set() happens mid-turn", async () => {
  const entered = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const Holder = defineActor({
    name: "holder",
    handlers: {
      async hold(ctx) {
        const before = ctx.config.get("flag");
        entered.resolve();
        await release.promise;
        return { before, after: ctx.config.get("flag"), version: ctx.config.version };
      },
      read: (ctx) => ctx.config.get("flag"),
    },
  });
  await using system = await createSystem({
    actors: [Holder],
    logger: "error",
    config: { sources: [fromKv("cfg")], defaults: { flag: "old" } },
  });
  const ref = system.ref(Holder, "h");
  const held = ref.ask("hold");
  await within(entered.promise, 2_000, "the turn to start");
  const versionAtStart = system.config.version;
  await system.config.set("flag", "new");
  assert.equal(system.config.get("flag"), "new");
  release.resolve();
  assert.deepEqual(await held, { before: "old", after: "old", version: versionAtStart });
  assert.equal(await ref.ask("read"), "new");
});

Deno.test("createSystem() fails with a ConfigError when the config is refused", async () => {
  await assert.rejects(
    createSystem({
      logger: "error",
      mesh: inProcessMesh(),
      config: {
        sources: [fromEnv("APP_", { env: { APP_DB__PASSWORD: '"hunter2"' } })],
        secrets: ["db.password"],
        validate: (t) => {
          throw new Error(`no: ${JSON.stringify(t)}`);
        },
      },
    }),
    (err) => err instanceof ConfigError && !err.message.includes("hunter2"),
  );
});

Deno.test("system.config without options is empty and read-only", async () => {
  await using system = await createSystem({ logger: "error" });
  assert.deepEqual(system.config.get(""), {});
  assert.deepEqual(system.config.health(), []);
  await assert.rejects(system.config.set("a", 1), TypeError);
});
