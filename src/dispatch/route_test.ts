import assert from "node:assert/strict";
import { inProcessMesh } from "../mesh/in_process.ts";
import { startMembership } from "../directory/membership.ts";
import { createOwnership, type Ownership } from "../directory/ownership.ts";
import { consoleLogger } from "../actor/envelope.ts";
import { msgpack } from "../codec/mod.ts";
import { Call } from "./call.ts";
import { Remote } from "./route.ts";
import { subjects } from "./subjects.ts";

const TTL = 300;

Deno.test("a dead node is forgotten after the stale-subscription window: no owner look-ups after it", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const [connA, connB] = await Promise.all(["a", "b"].map((node) => mesh.connect({ node })));
  const a = await startMembership(connA!, {
    prefix: "t",
    node: { id: "a", types: [], since: Date.now() },
    ttl: TTL,
  });
  const b = await startMembership(connB!, {
    prefix: "t",
    node: { id: "b", types: ["thing"], since: Date.now() },
    ttl: TTL,
  });
  const real = await createOwnership(connA!, a, { prefix: "t" });
  let lookups = 0;
  const ownership: Ownership = {
    claim: (t, i, o) => real.claim(t, i, o),
    release: (t, i) => real.release(t, i),
    locate: (t, i) => real.locate(t, i),
    owner: (t, i) => {
      lookups++;
      return real.owner(t, i);
    },
    releaseAll: () => real.releaseAll(),
    watch: () => real.watch(),
    close: () => real.close(),
  };
  const remote = new Remote({
    node: "a",
    conn: connA!,
    subjects: subjects("t"),
    membership: a,
    ownership,
    log: consoleLogger("silent"),
    wireCodec: msgpack,
    maxPayload: 1024,
    defs: new Map(),
    deliverHere: () => assert.fail("nothing is hosted here"),
    staleSubscriptionMs: 400,
    replyPrefixes: ["_INBOX"],
  });
  const send = () =>
    new Promise<void>((resolve) => {
      const call = new Call({
        kind: "ask",
        type: "thing",
        id: "x",
        handler: "h",
        payload: null,
        size: 1,
        deadline: performance.now() + 200,
        chain: [],
      }, { resolve: () => resolve(), reject: () => resolve() });
      remote.send(call);
    });
  try {
    await send();
    assert.equal(lookups, 0, "no node died yet: no look-up");
    b._pauseHeartbeats(); // b dies (its subscriptions could outlive it)
    const t0 = performance.now();
    while (a.nodes().some((n) => n.id === "b")) {
      assert.ok(performance.now() - t0 < 3000, "b declared dead");
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 50)); // the node_left event follows the view
    await send();
    assert.ok(lookups > 0, "within the window, the owner is looked up before sending");
    await new Promise((r) => setTimeout(r, 450));
    const before = lookups;
    await send();
    await send();
    assert.equal(lookups, before, "after the window, no more look-ups");
  } finally {
    remote.close();
    await real.close();
    b._resumeHeartbeats();
    await b.close();
    await a.close();
    await connA!.close();
    await connB!.close();
  }
});
