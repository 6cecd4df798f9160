/** Ownership on a virtual clock: take-overs happen at exact times, moved by the test. */
import assert from "node:assert/strict";
import { inProcessMesh } from "../mesh/in_process.ts";
import { type VirtualClock, virtualClock } from "../util/virtual_clock.ts";
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

/** A mesh and a journal on a virtual clock. */
function world(): { mesh: Mesh; journal: Journal; clock: VirtualClock } {
  const clock = virtualClock(new Date("2026-01-01T00:00:00Z"));
  return {
    mesh: inProcessMesh({ leaseTtl: TTL, clock }),
    journal: memoryJournal({ now: clock.now }),
    clock,
  };
}

async function join(
  mesh: Mesh,
  clock: VirtualClock,
  journal: Journal,
  id: string,
): Promise<TestNode> {
  const conn = await mesh.connect({ node: id, clock });
  const m = await startMembership(conn, {
    prefix: "t",
    node: { id, types: ["account"], since: clock.now() },
    ttl: mesh.leaseTtl,
    margin: MARGIN,
    onWarning: () => {},
    clock,
  });
  return { id, conn, m, o: createOwnership(m, { journal }) };
}

async function cluster(
  mesh: Mesh,
  clock: VirtualClock,
  journal: Journal,
  n: number,
): Promise<TestNode[]> {
  const nodes: TestNode[] = [];
  for (let i = 0; i < n; i++) nodes.push(await join(mesh, clock, journal, `n${i}`));
  await clock.advance(0);
  assert.ok(nodes.every((x) => x.m.nodes().length === n), "everyone sees everyone");
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
  const { mesh, journal, clock } = world();
  const nodes = await cluster(mesh, clock, journal, 5);
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
  const { mesh, journal, clock } = world();
  const [a, b] = await cluster(mesh, clock, journal, 2);
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
  const { mesh, journal, clock } = world();
  const [a, b] = await cluster(mesh, clock, journal, 2);
  assert.equal((await a!.o.claim("account", "alice")).ok, true);
  await clock.advance(TTL / 3); // a heartbeat at ttl / 3 ...
  a!.m._pauseHeartbeats(); // ... then a "crashes": its key stays, its heartbeats stop
  assert.equal((await b!.o.claim("account", "alice")).ok, false);
  await clock.advance(TTL + MARGIN); // silent for ttl + margin: still alive, not after
  assert.equal((await b!.o.claim("account", "alice")).ok, false);
  assert.equal(await b!.o.locate("account", "alice"), a!.id);
  await clock.advance(1);
  assert.equal(b!.m.isAlive(a!.id), false, "a declared dead");
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
  const { mesh, journal, clock } = world();
  const [a] = await cluster(mesh, clock, journal, 1);
  // A record of a node nobody has seen (it died before anyone here started).
  await journal.activate("account/alice", { node: "ghost" });
  await clock.advance(1000);
  const fresh = await join(mesh, clock, journal, "fresh");
  let claimed: Awaited<ReturnType<Ownership["claim"]>> | undefined;
  const claim = fresh.o.claim("account", "alice").then((r) => claimed = r);
  await clock.advance(TTL + MARGIN);
  assert.equal(claimed, undefined, "still waiting ttl + margin after it started");
  await clock.advance(1);
  const r = await claim;
  assert.ok(r.ok && r.takenFrom === "ghost");
  assert.ok(clock.monotonic() >= fresh.m.settledAt(), "claimed only once settled");
  // A claim that would wait can be aborted.
  await journal.activate("account/bob", { node: "ghost" });
  const late = await join(mesh, clock, journal, "late");
  const ac = new AbortController();
  const aborted = assert.rejects(
    late.o.claim("account", "bob", { signal: ac.signal }),
    (e: Error) => e.message === "gave up",
  );
  await clock.advance(20);
  ac.abort(new Error("gave up"));
  await aborted;
  await leave(a!, fresh, late);
  await journal.close();
});

Deno.test("claim() takes over at once from a node that left gracefully", async () => {
  const { mesh, journal, clock } = world();
  const [a, b] = await cluster(mesh, clock, journal, 2);
  assert.equal((await a!.o.claim("account", "alice")).ok, true);
  // Leave without releasing the record (as if the release failed).
  await a!.m.close();
  await clock.advance(0);
  assert.equal(b!.m.isAlive(a!.id), false, "a left");
  const r = await b!.o.claim("account", "alice");
  assert.ok(r.ok && r.takenFrom === a!.id);
  assert.equal(clock.monotonic(), 0, "at once");
  b!.o.close();
  a!.o.close();
  await a!.conn.close();
  await b!.m.close();
  await b!.conn.close();
  await journal.close();
});
