import assert from "node:assert/strict";
import { delay, waitFor } from "../../tests/helpers.ts";
import { inProcessMesh } from "../mesh/in_process.ts";
import type { Mesh, MeshConnection } from "../mesh/types.ts";
import { UnavailableError } from "../errors.ts";
import type { DirectoryEvent } from "./types.ts";
import { type Membership, startMembership } from "./membership.ts";
import { actorKey, createOwnership, type Ownership } from "./ownership.ts";

const TTL = 300;
const MARGIN = 200;

interface TestNode {
  id: string;
  conn: MeshConnection;
  m: Membership;
  o: Ownership;
}

async function join(mesh: Mesh, id: string): Promise<TestNode> {
  const conn = await mesh.connect({ node: id });
  const m = await startMembership(conn, {
    prefix: "t",
    node: { id, types: ["account"], since: Date.now() },
    ttl: mesh.leaseTtl,
    margin: MARGIN,
    onWarning: () => {},
  });
  const o = await createOwnership(conn, m, { prefix: "t" });
  return { id, conn, m, o };
}

async function cluster(mesh: Mesh, n: number): Promise<TestNode[]> {
  const nodes: TestNode[] = [];
  for (let i = 0; i < n; i++) nodes.push(await join(mesh, `n${i}`));
  await waitFor(
    () => nodes.every((x) => x.m.nodes().length === n),
    100,
    "everyone sees everyone",
  );
  return nodes;
}

async function leave(...nodes: TestNode[]): Promise<void> {
  for (const n of nodes) {
    await n.o.close();
    await n.m.close();
    await n.conn.close();
  }
}

Deno.test("concurrent claims of a fresh actor: exactly one node wins", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const nodes = await cluster(mesh, 5);
  for (let round = 0; round < 10; round++) {
    const results = await Promise.all(nodes.map((n) => n.o.claim("account", `acc-${round}`)));
    const winners = results.map((r, i) => (r.ok ? nodes[i]!.id : undefined)).filter(Boolean);
    assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(results)}`);
    for (const r of results) if (!r.ok) assert.equal(r.owner, winners[0]);
    assert.equal(await nodes[3]!.o.locate("account", `acc-${round}`), winners[0]);
  }
  await leave(...nodes);
});

Deno.test("claim() by the owner succeeds again; release() deletes only its own record", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const [a, b] = await cluster(mesh, 2);
  const first = await a!.o.claim("account", "alice");
  assert.equal(first.ok, true);
  const again = await a!.o.claim("account", "alice");
  assert.ok(again.ok && first.ok && again.revision > first.revision);
  assert.notEqual(again.ok && again.incarnation, first.ok && first.incarnation);
  assert.deepEqual(await b!.o.claim("account", "alice"), { ok: false, owner: a!.id });
  await b!.o.release("account", "alice"); // not b's: nothing happens
  assert.equal(await b!.o.locate("account", "alice"), a!.id);
  await a!.o.release("account", "alice");
  assert.equal(await b!.o.locate("account", "alice"), undefined);
  assert.equal((await b!.o.claim("account", "alice")).ok, true);
  assert.equal(await a!.o.locate("account", "alice"), b!.id);
  await leave(a!, b!);
});

Deno.test("claim() takes over from a dead owner after ttl + margin, never while it lives", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const [a, b] = await cluster(mesh, 2);
  assert.equal((await a!.o.claim("account", "alice")).ok, true);
  a!.m._pauseHeartbeats(); // a "crashes": its key stays, its heartbeats stop
  const crashed = performance.now();
  assert.deepEqual(await b!.o.claim("account", "alice"), { ok: false, owner: a!.id });
  await delay(TTL);
  assert.deepEqual(await b!.o.claim("account", "alice"), { ok: false, owner: a!.id });
  assert.equal(await b!.o.locate("account", "alice"), a!.id);
  await waitFor(() => !b!.m.isAlive(a!.id), 2_000, "a declared dead");
  assert.ok(performance.now() - crashed >= TTL + MARGIN - TTL / 3);
  assert.equal(await b!.o.locate("account", "alice"), undefined);
  const taken = await b!.o.claim("account", "alice");
  assert.ok(taken.ok);
  assert.equal(taken.takenFrom, a!.id);
  assert.equal(await b!.o.locate("account", "alice"), b!.id);
  // The crashed node fenced itself long before: it cannot claim anything.
  assert.equal(a!.m.isFenced(), true);
  await assert.rejects(a!.o.claim("account", "bob"), UnavailableError);
  await leave(a!, b!);
});

Deno.test("a node that just started waits before taking over from a node it never saw", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const [a] = await cluster(mesh, 1);
  // A record of a node nobody has seen (it died before anyone here started).
  const kv = await a!.conn.kv("t_acts");
  await kv.put(
    actorKey("account", "alice"),
    new TextEncoder().encode(JSON.stringify({ node: "ghost", incarnation: "x" })),
  );
  const fresh = await join(mesh, "fresh");
  const t0 = performance.now();
  const r = await fresh.o.claim("account", "alice");
  const waited = performance.now() - t0;
  assert.ok(r.ok && r.takenFrom === "ghost");
  assert.ok(performance.now() >= fresh.m.settledAt(), "claimed only once settled");
  assert.ok(waited >= TTL + MARGIN - 50, `waited only ${waited} ms`);
  // A claim that would wait can be aborted.
  await kv.put(
    actorKey("account", "bob"),
    new TextEncoder().encode(JSON.stringify({ node: "ghost", incarnation: "y" })),
  );
  const late = await join(mesh, "late");
  await assert.rejects(
    late.o.claim("account", "bob", { signal: AbortSignal.timeout(20) }),
    (e: Error) => e.name === "TimeoutError",
  );
  await leave(a!, fresh, late);
});

Deno.test("claim() takes over at once from a node that left gracefully", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const [a, b] = await cluster(mesh, 2);
  assert.equal((await a!.o.claim("account", "alice")).ok, true);
  // Leave without releasing the record (as if releaseAll() failed).
  await a!.m.close();
  await waitFor(() => !b!.m.isAlive(a!.id), 50, "a left");
  const t0 = performance.now();
  const r = await b!.o.claim("account", "alice");
  assert.ok(r.ok && r.takenFrom === a!.id);
  assert.ok(performance.now() - t0 < 50);
  await b!.o.close();
  await a!.o.close();
  await a!.conn.close();
  await b!.m.close();
  await b!.conn.close();
});

Deno.test("watch() reports activations and deactivations; close() releases all", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const [a, b] = await cluster(mesh, 2);
  await a!.o.claim("account", "pre");
  const watch = b!.o.watch();
  const seen: DirectoryEvent[] = [];
  const loop = (async () => {
    for await (const e of watch) seen.push(e);
  })();
  await a!.o.claim("account", "x.y z"); // any id round-trips
  await a!.o.release("account", "pre");
  await a!.o.claim("account", "other");
  await waitFor(() => seen.length >= 4, 100, "events");
  await a!.o.close();
  await waitFor(() => seen.length >= 6, 100, "close releases all");
  watch.stop();
  await loop;
  const s = (e: DirectoryEvent) =>
    "actor" in e ? `${e.type}:${e.actor.type}/${e.actor.id}@${e.node}` : e.type;
  assert.deepEqual(seen.slice(0, 4).map(s), [
    "activated:account/pre@n0",
    "activated:account/x.y z@n0",
    "deactivated:account/pre@n0",
    "activated:account/other@n0",
  ]);
  assert.deepEqual(
    seen.slice(4).map(s).sort(),
    ["deactivated:account/other@n0", "deactivated:account/x.y z@n0"],
  );
  assert.deepEqual(await (await b!.conn.kv("t_acts")).keys(), []);
  await leave(a!, b!);
});
