/** createSystem's options: checked in one place (src/options.ts), before anything is opened. */
import assert from "node:assert/strict";
import { createSystem, defineActor, inProcessMesh, memoryJournal } from "../mod.ts";
import type { Journal, Mesh } from "../spi.ts";

const Echo = defineActor({ name: "echo", handlers: { say: (_ctx, s: string) => s } });
const Guarded = defineActor({
  name: "guarded",
  access: { "*": "authenticated" },
  handlers: { say: (_ctx, s: string) => s },
});

/** A mesh that counts connects, and a journal that counts closes. */
function counted(): { mesh: Mesh; journal: Journal; connects: () => number; closes: () => number } {
  const inner = inProcessMesh();
  let connects = 0;
  let closes = 0;
  const j = memoryJournal();
  return {
    mesh: { ...inner, connect: (o) => (connects++, inner.connect(o)) },
    journal: { ...j, close: () => (closes++, j.close()) },
    connects: () => connects,
    closes: () => closes,
  };
}

Deno.test("createSystem() refuses each bad option with a TypeError or RangeError before it connects", async () => {
  const cases: [string, Parameters<typeof createSystem>[0], typeof TypeError, RegExp][] = [
    ["a node id with a dot", { node: "a.b" }, TypeError, /Node id must match/],
    [
      "an actor that is not a definition",
      {
        actors: [{ name: "x" } as unknown as typeof Echo],
      },
      TypeError,
      /must come from defineActor/,
    ],
    ["a type listed twice", { actors: [Echo, Echo] }, TypeError, /"echo" is listed twice/],
    ["access rules without auth", { actors: [Guarded] }, TypeError, /needs auth/],
    ["an unknown content type", { contentType: "text/csv" }, TypeError, /No codec/],
    ["maxActivations of 0", { maxActivations: 0 }, RangeError, /maxActivations/],
    ["a negative maxPayload", { maxPayload: -1 }, RangeError, /maxPayload must be positive/],
  ];
  for (const [what, options, type, message] of cases) {
    const c = counted();
    await assert.rejects(
      createSystem({ ...options, mesh: c.mesh, journal: c.journal, logger: "silent" }),
      (err: unknown) => err instanceof type && message.test((err as Error).message),
      what,
    );
    assert.equal(c.connects(), 0, `${what}: nothing was connected`);
  }
});

Deno.test("createSystem() with good options connects once, and a given journal stays the caller's", async () => {
  const c = counted();
  const system = await createSystem({ actors: [Echo], mesh: c.mesh, journal: c.journal });
  assert.equal(await system.ref(Echo, "e").ask("say", "hi"), "hi");
  await system.close();
  assert.equal(c.connects(), 1);
  assert.equal(c.closes(), 0, "a journal passed in is not closed by the node");
  await c.journal.close();
});
