import assert from "node:assert/strict";
import { defineActor } from "../actor/define.ts";
import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import { type Membership, startMembership } from "../directory/membership.ts";
import { Placement, rendezvous } from "../directory/placement.ts";
import { inProcessMesh } from "../mesh/in_process.ts";
import type { MeshConnection } from "../mesh/types.ts";
import { virtualClock } from "../util/virtual_clock.ts";
import { Call } from "./call.ts";
import { Router } from "./router.ts";

const Thing = defineActor({
  name: "thing",
  initialState: () => ({}),
  handlers: { h: () => 1 },
});
const Worker = defineActor({ name: "work", stateless: true, handlers: { h: () => 1 } });

const call = (type: string, id: string) =>
  new Call({
    kind: "ask",
    type,
    id,
    handler: "h",
    payload: null,
    deadline: clock.monotonic() + 1000,
    chain: [],
  }, { resolve() {}, reject() {} });

interface Node {
  conn: MeshConnection;
  m: Membership;
}

/** The nodes' clock: time stands still, so no lease lapses while a test runs. */
const clock = virtualClock();

async function nodes(ids: string[], types: string[]): Promise<Node[]> {
  const mesh = inProcessMesh({ leaseTtl: 300, clock });
  const out: Node[] = [];
  for (const id of ids) {
    const conn = await mesh.connect({ node: id, clock });
    const m = await startMembership(conn, {
      prefix: "t",
      node: { id, types, since: clock.now() },
      ttl: 300,
      onWarning: () => {},
      clock,
    });
    out.push({ conn, m });
  }
  await clock.advance(0);
  assert.ok(out.every((n) => n.m.nodes().length === ids.length), "everyone sees everyone");
  return out;
}

async function stop(ns: Node[]): Promise<void> {
  for (const n of ns) {
    await n.m.close();
    await n.conn.close();
  }
}

Deno.test("Placement gives every node the same owner, spreads keys, and moves only a departed node's keys", () => {
  const three = new Placement(["c", "a", "b"]);
  const again = new Placement(["b", "c", "a"]);
  const counts = new Map<string, number>();
  for (let i = 0; i < 3000; i++) {
    const owner = three.owner(`thing/${i}`)!;
    assert.equal(again.owner(`thing/${i}`), owner);
    counts.set(owner, (counts.get(owner) ?? 0) + 1);
  }
  for (const n of ["a", "b", "c"]) assert.ok(counts.get(n)! > 800, `${n}: ${counts.get(n)}`);
  const two = new Placement(["a", "c"]);
  for (let i = 0; i < 3000; i++) {
    const before = three.owner(`thing/${i}`)!;
    if (before !== "b") assert.equal(two.owner(`thing/${i}`), before);
  }
  assert.equal(three.owner("thing/x", new Set(["a", "b", "c"])), undefined);
  assert.equal(new Placement([]).owner("k"), undefined);
  // rendezvous() (the one-off form) agrees on who wins a key with itself across orders
  assert.equal(rendezvous(["a", "b", "c"], "k"), rendezvous(["c", "b", "a"], "k"));
});

Deno.test("Router: a local activation first, then the location cache, then placement", async () => {
  const ns = await nodes(["n1", "n2", "n3"], ["thing", "work"]);
  const defs = new Map<string, ActorDefinition<AnyActorTypes>>([
    ["thing", Thing as unknown as ActorDefinition<AnyActorTypes>],
    ["work", Worker as unknown as ActorDefinition<AnyActorTypes>],
  ]);
  const local = new Set<string>();
  const router = new Router({
    node: "n1",
    membership: ns[0]!.m,
    defs,
    isLocal: (c) => local.has(c.key),
  });
  try {
    const placement = new Placement(["n1", "n2", "n3"]);
    // an id placed elsewhere goes to its placement node
    let id = 0;
    while (placement.owner(`thing/${id}`) === "n1") id++;
    const elsewhere = placement.owner(`thing/${id}`)!;
    assert.deepEqual(router.decide(call("thing", `${id}`)), { to: "node", node: elsewhere });
    // active here: local, whatever placement says
    local.add(`thing/${id}`);
    assert.deepEqual(router.decide(call("thing", `${id}`)), { to: "local" });
    local.clear();
    // a redirect teaches the cache; an older revision does not override a newer one
    const other = elsewhere === "n2" ? "n3" : "n2";
    router.redirected(`thing/${id}`, other, 5);
    assert.deepEqual(router.decide(call("thing", `${id}`)), { to: "node", node: other });
    router.redirected(`thing/${id}`, elsewhere, 4);
    assert.deepEqual(router.decide(call("thing", `${id}`)), { to: "node", node: other });
    // a node that refused is avoided; when every host refused, all are tried again
    assert.notEqual(
      (router.decide(call("thing", `${id}`), new Set([other])) as { node?: string }).node,
      other,
    );
    assert.ok(router.decide(call("thing", `${id}`), new Set(["n1", "n2", "n3"])).to !== "none");
    // a node's death purges its cache entries and its placement
    assert.equal(router.cached, 1);
    router.forget(other);
    assert.equal(router.cached, 0);
    // unknown types are refused; stateless workers go to a host
    const none = router.decide(call("ghost", "x"));
    assert.equal(none.to, "none");
    assert.equal((none as { error?: Error }).error?.name, "UnknownActorTypeError");
    assert.ok(["local", "node"].includes(router.decide(call("work", "")).to));
  } finally {
    router.close();
    await stop(ns);
  }
});

Deno.test("Router: a node that dies leaves placement and the cache at once", async () => {
  const ns = await nodes(["n1", "n2"], ["thing"]);
  const defs = new Map<string, ActorDefinition<AnyActorTypes>>([
    ["thing", Thing as unknown as ActorDefinition<AnyActorTypes>],
  ]);
  const router = new Router({ node: "n1", membership: ns[0]!.m, defs, isLocal: () => false });
  try {
    router.redirected("thing/a", "n2", 1);
    await ns[1]!.m.close(); // n2 leaves
    await clock.advance(0);
    assert.equal(router.cached, 0, "n2's entries forgotten at once");
    for (let i = 0; i < 50; i++) {
      assert.deepEqual(router.decide(call("thing", `${i}`)), { to: "local" });
    }
  } finally {
    router.close();
    await ns[0]!.m.close();
    for (const n of ns) await n.conn.close();
  }
});
