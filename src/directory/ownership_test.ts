import assert from "node:assert/strict";
import { delay, waitFor } from "../util/_testing.ts";
import { inProcessMesh } from "../mesh/in_process.ts";
import type { Mesh, MeshConnection } from "../mesh/types.ts";
import { UnavailableError } from "../errors.ts";
import { memoryJournal } from "../journal/memory.ts";
import type { Journal } from "../journal/types.ts";
import { type Membership, startMembership } from "./membership.ts";
import { createOwnership, type Ownership } from "./ownership.ts";

const TTL = 300;
const MARGIN = 200;

interface TestNode {
  id: string;
  conn: MeshConnection;
  m: Membership;
  o: Ownership;
}

async function join(mesh: Mesh, journal: Journal, id: string): Promise<TestNode> {
  const conn = await mesh.connect({ node: id });
  const m = await startMembership(conn, {
    prefix: "t",
    node: { id, types: ["account"], since: Date.now() },
    ttl: mesh.leaseTtl,
    margin: MARGIN,
    onWarning: () => {},
  });
  return { id, conn, m, o: createOwnership(m, { journal }) };
}

async function cluster(mesh: Mesh, journal: Journal, n: number): Promise<TestNode[]> {
  const nodes: TestNode[] = [];
  for (let i = 0; i < n; i++) nodes.push(await join(mesh, journal, `n${i}`));
  await waitFor(
    () => nodes.every((x) => x.m.nodes().length === n),
    100,
    "everyone sees everyone",
  );
  return nodes;
}

async function leave(...nodes: TestNode[]): Promise<void> {
  for (const n of nodes) {
    n.o.close();
    await n.m.close();
    await n.conn.close();
  }
}

Deno.test("concurrent claims of a fresh actor: exactly one node wins, the others learn who", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const journal = memoryJournal();
  const nodes = await cluster(mesh, journal, 5);
  for (let round = 0; round < 10; round++) {
    const results = await Promise.all(nodes.map((n) => n.o.claim("account", `acc-${round}`)));
    const winners = results.map((r, i) => (r.ok ? nodes[i]!.id : undefined)).filter(Boolean);
    assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(results)}`);
    const won = results.find((r) => r.ok);
    assert.ok(won?.ok);
    for (const r of results) {
      if (r.ok) continue;
      assert.equal(r.owner, winners[0]);
      assert.equal(r.revision, won.recovered.epoch);
    }
    const other = nodes.find((n) => n.id !== winners[0])!;
    assert.equal(await other.o.locate("account", `acc-${round}`), winners[0]);
  }
  await leave(...nodes);
  await journal.close();
});

Deno.test("claim() by the owner succeeds again with a newer epoch; release() clears only its own record", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const journal = memoryJournal();
  const [a, b] = await cluster(mesh, journal, 2);
  const first = await a!.o.claim("account", "alice");
  assert.ok(first.ok);
  const again = await a!.o.claim("account", "alice");
  assert.ok(again.ok && again.recovered.epoch > first.recovered.epoch);
  assert.deepEqual(await b!.o.claim("account", "alice"), {
    ok: false,
    owner: a!.id,
    revision: again.recovered.epoch,
  });
  await b!.o.release("account", "alice", again.recovered.epoch); // not b's: nothing happens
  assert.equal(await b!.o.locate("account", "alice"), a!.id);
  await a!.o.release("account", "alice", first.recovered.epoch); // an older epoch: nothing
  assert.equal(await b!.o.locate("account", "alice"), a!.id);
  await a!.o.release("account", "alice", again.recovered.epoch);
  assert.equal(await b!.o.locate("account", "alice"), undefined);
  assert.equal((await b!.o.claim("account", "alice")).ok, true);
  assert.equal(await a!.o.locate("account", "alice"), b!.id);
  await leave(a!, b!);
  await journal.close();
});

Deno.test("claim() takes over from a dead owner after ttl + margin, never while it lives", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const journal = memoryJournal();
  const [a, b] = await cluster(mesh, journal, 2);
  assert.equal((await a!.o.claim("account", "alice")).ok, true);
  a!.m._pauseHeartbeats(); // a "crashes": its key stays, its heartbeats stop
  const crashed = performance.now();
  assert.equal((await b!.o.claim("account", "alice")).ok, false);
  await delay(TTL);
  assert.equal((await b!.o.claim("account", "alice")).ok, false);
  assert.equal(await b!.o.locate("account", "alice"), a!.id);
  await waitFor(() => !b!.m.isAlive(a!.id), 2_000, "a declared dead");
  assert.ok(performance.now() - crashed >= TTL + MARGIN - TTL / 3);
  assert.equal(await b!.o.locate("account", "alice"), undefined);
  const taken = await b!.o.claim("account", "alice");
  assert.ok(taken.ok);
  assert.equal(taken.takenFrom, a!.id);
  assert.equal(await a!.o.owner("account", "alice"), b!.id);
  // The crashed node fenced itself long before: it cannot claim anything.
  assert.equal(a!.m.isFenced(), true);
  await assert.rejects(a!.o.claim("account", "bob"), UnavailableError);
  await leave(a!, b!);
  await journal.close();
});

Deno.test("a node that just started waits before taking over from a node it never saw", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const journal = memoryJournal();
  const [a] = await cluster(mesh, journal, 1);
  // A record of a node nobody has seen (it died before anyone here started).
  await journal.activate("account/alice", { node: "ghost" });
  const fresh = await join(mesh, journal, "fresh");
  const t0 = performance.now();
  const r = await fresh.o.claim("account", "alice");
  const waited = performance.now() - t0;
  assert.ok(r.ok && r.takenFrom === "ghost");
  assert.ok(performance.now() >= fresh.m.settledAt(), "claimed only once settled");
  assert.ok(waited >= TTL + MARGIN - 50, `waited only ${waited} ms`);
  // A claim that would wait can be aborted.
  await journal.activate("account/bob", { node: "ghost" });
  const late = await join(mesh, journal, "late");
  await assert.rejects(
    late.o.claim("account", "bob", { signal: AbortSignal.timeout(20) }),
    (e: Error) => e.name === "TimeoutError",
  );
  await leave(a!, fresh, late);
  await journal.close();
});

Deno.test("claim() takes over at once from a node that left gracefully", async () => {
  const mesh = inProcessMesh({ leaseTtl: TTL });
  const journal = memoryJournal();
  const [a, b] = await cluster(mesh, journal, 2);
  assert.equal((await a!.o.claim("account", "alice")).ok, true);
  // Leave without releasing the record (as if the release failed).
  await a!.m.close();
  await waitFor(() => !b!.m.isAlive(a!.id), 50, "a left");
  const t0 = performance.now();
  const r = await b!.o.claim("account", "alice");
  assert.ok(r.ok && r.takenFrom === a!.id);
  assert.ok(performance.now() - t0 < 50);
  b!.o.close();
  a!.o.close();
  await a!.conn.close();
  await b!.m.close();
  await b!.conn.close();
  await journal.close();
});
