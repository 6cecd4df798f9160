/**
 * Routing addressed to nodes, as a caller sees it: requests go to a node's inbox for the type,
 * never to an actor's subject; a caller that learned an actor's location from a redirect keeps
 * it, and a stale location costs one redirect, never a wrong answer.
 */
import assert from "node:assert/strict";
import { createSystem, defineActor, inProcessMesh, memoryJournal, type System } from "../mod.ts";
import type { Mesh, MeshConnection, MeshSubscription } from "../spi.ts";
import { Placement } from "../src/directory/placement.ts";
import { virtualClock } from "../adapters/testing/mod.ts";
import { advanceUntil } from "./helpers.ts";

const Counter = defineActor({
  name: "tally",
  initialState: () => ({ n: 0 }),
  events: { added: (s, e: { by: number }) => ({ n: s.n + e.by }) },
  handlers: {
    add(ctx, by: number) {
      ctx.emit("added", { by });
      return ctx.state.n;
    },
  },
  idleAfter: 150,
});

Deno.test("a stale location costs one redirect, never a wrong answer; the actor's state follows it", async () => {
  // A virtual clock: the actor passivates when the test says, not when a slow step lets it.
  const clock = virtualClock();
  const mesh = inProcessMesh({ clock });
  const journal = memoryJournal({ now: clock.now });
  const systems: System[] = [];
  const start = async (node: string, actors: typeof Counter[]) => {
    const s = await createSystem({ actors, mesh, journal, node, logger: "silent", clock });
    systems.push(s);
    return s;
  };
  // Every request on the mesh, as [to node, type]: routing is visible on the subjects.
  const spy = await mesh.connect({ node: "spy", clock });
  const seen: string[] = [];
  spy.subscribe(`${mesh.prefix}.n.>`, (m) => void seen.push(m.subject.split(".")[2]!));
  try {
    const n1 = await start("n1", [Counter]);
    const client = await start("client", []);
    // An id that n2 will own by placement once it joins, activated on n1 before that.
    let i = 0;
    while (new Placement(["n1", "n2"]).owner(`tally/t${i}`) !== "n2") i++;
    const id = `t${i}`;
    assert.equal(await client.ref(Counter, id).ask("add", 1), 1);
    const n2 = await start("n2", [Counter]);
    await clock.advance(0);
    assert.equal(client.directory.nodes().length, 3, "n2 seen by the client");

    // Placement says n2, but n1 holds the actor: n2 redirects (nothing runs there), the client
    // resends to n1 and remembers.
    seen.length = 0;
    assert.equal(await client.ref(Counter, id).ask("add", 1), 2);
    assert.deepEqual(seen, ["n2", "n1"]);
    seen.length = 0;
    assert.equal(await client.ref(Counter, id).ask("add", 1), 3);
    assert.deepEqual(seen, ["n1"], "the location is remembered");

    // The actor passivates on n1, and is activated again on n2 by a caller without that memory:
    // the client's location is stale now.
    await advanceUntil(
      clock,
      async () => await n1.directory.locate(Counter, id) === undefined,
      1_000,
      "idle",
    );
    assert.equal(await n2.ref(Counter, id).ask("add", 1), 4);
    assert.equal(await n2.directory.locate(Counter, id), "n2");
    seen.length = 0;
    assert.equal(await client.ref(Counter, id).ask("add", 1), 5, "the right state, from n2");
    assert.deepEqual(seen, ["n1", "n2"], "one redirect from the stale location");
    seen.length = 0;
    assert.equal(await client.ref(Counter, id).ask("add", 1), 6);
    assert.deepEqual(seen, ["n2"]);
    // one log, no fork: every add is in it once, in order
    const log = [];
    for await (const e of client.history(Counter, id)) log.push((e.payload as { by: number }).by);
    assert.deepEqual(log, [1, 1, 1, 1, 1, 1]);
  } finally {
    for (const s of systems.reverse()) await s.close();
    await spy.close();
    await journal.close();
  }
});

/** A mesh whose connections count the subscriptions open on them. */
function counting(mesh: Mesh): { mesh: Mesh; open: () => number } {
  let open = 0;
  return {
    open: () => open,
    mesh: {
      ...mesh,
      async connect(o) {
        const conn = await mesh.connect(o);
        const counted: MeshConnection = {
          maxPayload: conn.maxPayload,
          publish: (...a) => conn.publish(...a),
          request: (...a) => conn.request(...a),
          inbox: () => conn.inbox(),
          flush: () => conn.flush(),
          kv: (...a) => conn.kv(...a),
          onStatus: (l) => conn.onStatus(l),
          close: () => conn.close(),
          subscribe(...args): MeshSubscription {
            const sub = conn.subscribe(...args);
            open++;
            let live = true;
            const done = () => {
              if (live) open--;
              live = false;
            };
            return {
              subject: sub.subject,
              unsubscribe: () => (done(), sub.unsubscribe()),
              drain: () => (done(), sub.drain()),
            };
          },
        };
        return counted;
      },
    },
  };
}

Deno.test("mesh interest does not grow with actors: no subscription per active actor", async () => {
  const { mesh, open } = counting(inProcessMesh());
  const host = await createSystem({ actors: [Counter], mesh, node: "h" });
  const client = await createSystem({ mesh, node: "c" });
  try {
    await client.ref(Counter, "warm").ask("add", 1);
    const before = open();
    await Promise.all(
      Array.from({ length: 500 }, (_, k) => client.ref(Counter, `a${k}`).ask("add", 1)),
    );
    assert.equal(await host.directory.locate(Counter, "a499"), "h");
    assert.equal(open(), before, "500 more active actors, not one more subscription");
  } finally {
    await client.close();
    await host.close();
  }
});
