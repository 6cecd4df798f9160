/**
 * Leases on a virtual clock: renewals, deadlines and take-overs happen at exact times, moved
 * by the test, so "after ttl + margin, and not before" is checked to the millisecond.
 */
import assert from "node:assert/strict";
import { inProcessMesh } from "../mesh/in_process.ts";
import { delay } from "../util/async.ts";
import { type VirtualClock, virtualClock } from "../util/virtual_clock.ts";
import type { Mesh, MeshConnection } from "../mesh/types.ts";
import { encodeToken } from "../mesh/subject.ts";
import { ClosedError, ConflictError, TimeoutError } from "../errors.ts";
import { defaultMargin, type Membership, startMembership } from "./membership.ts";
import { createLeases, type HeldLease, type Leases, leaseToken } from "./leases.ts";
import { advanceUntil as until } from "../util/_testing.ts";

const TTL = 300;
const MARGIN = defaultMargin(TTL); // what waiters add to the holder's ttl

interface TestNode {
  id: string;
  conn: MeshConnection;
  m: Membership;
  l: Leases;
}

/** A cluster on a virtual clock. */
function cluster(): { mesh: Mesh; clock: VirtualClock } {
  const clock = virtualClock(new Date("2026-01-01T00:00:00Z"));
  return { mesh: inProcessMesh({ clock }), clock };
}

async function join(mesh: Mesh, clock: VirtualClock, id: string): Promise<TestNode> {
  const conn = await mesh.connect({ node: id, clock });
  const m = await startMembership(conn, {
    prefix: "t",
    node: { id, types: [], since: clock.now() },
    ttl: 5_000,
    onWarning: () => {},
    clock,
  });
  const l = await createLeases(conn, m, { prefix: "t", ttl: TTL, onWarning: () => {} });
  return { id, conn, m, l };
}

async function leave(...nodes: TestNode[]): Promise<void> {
  for (const n of nodes) {
    await n.l.close();
    await n.m.close();
    await n.conn.close();
  }
}

/** Simulates a crash: the connection goes away without releasing anything. */
async function crash(n: TestNode): Promise<void> {
  await n.conn.close();
}

Deno.test("lease() is exclusive; its token is the bucket's creation time and the acquiring revision", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  const lease = await a.l.lease("job");
  assert.equal(lease.name, "job");
  assert.equal(lease.holder, "a");
  const kv = await a.conn.kv("t_leases");
  const revision = (await kv.get(encodeToken("job")))!.revision;
  assert.equal(lease.fence, `${kv.incarnation}:${revision}`);
  const incarnation = await kv.incarnationNow();
  assert.equal(incarnation.createdAt, clock.now(), "the bucket was made on the mesh's clock");
  assert.equal(lease.token, incarnation.createdAt * 1000 + revision);
  assert.equal(lease.token, leaseToken(incarnation, revision));
  const otherNode = assert.rejects(b.l.lease("job", { timeout: TTL }), TimeoutError);
  const sameNode = assert.rejects(a.l.lease("job", { timeout: 50 }), TimeoutError);
  await clock.advance(TTL);
  await otherNode;
  await sameNode; // even on its node
  const ac = new AbortController();
  const waiting = b.l.lease("job", { signal: ac.signal });
  ac.abort(new Error("gave up"));
  await assert.rejects(waiting, /gave up/);
  assert.equal(lease.signal.aborted, false, "renewed past its ttl");
  await lease.release();
  assert.ok(lease.signal.aborted);
  assert.ok(lease.signal.reason instanceof ClosedError);
  await lease.release(); // idempotent
  assert.equal(await kv.get(encodeToken("job")), null);
  await leave(a, b);
});

Deno.test("tokens strictly increase across holders", async () => {
  const { mesh, clock } = cluster();
  const nodes = [
    await join(mesh, clock, "a"),
    await join(mesh, clock, "b"),
    await join(mesh, clock, "c"),
  ];
  let last = 0;
  for (let i = 0; i < 9; i++) {
    const lease = await nodes[i % 3]!.l.lease("seq", { timeout: 1_000 });
    assert.ok(lease.token > last, `token ${lease.token} after ${last}`);
    last = lease.token;
    await clock.advance(TTL / 3 + 10); // let it renew: renewals must not change the token
    assert.equal(lease.token, last);
    await lease.release();
  }
  await leave(...nodes);
});

Deno.test("release() wakes a waiter at once", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  const held = await a.l.lease("job", { ttl: 600 });
  let acquiredAt = -1;
  const waiting = b.l.lease("job", { timeout: 5_000 }).then((l) => {
    acquiredAt = clock.monotonic();
    return l;
  });
  await clock.advance(50);
  assert.equal(acquiredAt, -1, "still held");
  await held.release();
  const next = await waiting;
  assert.equal(acquiredAt, 50, "acquired with no time passing");
  assert.ok(next.token > held.token);
  await next.release();
  await leave(a, b);
});

Deno.test("a waiter takes over a dead holder's lease after ttl + margin, and not before", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  const held = await a.l.lease("job");
  // The test watches the key to know when the holder's last write was seen.
  const kv = await b.conn.kv("t_leases");
  const watch = kv.watch({ key: encodeToken("job") });
  let lastWrite = -1;
  const loop = (async () => {
    for await (const e of watch) {
      const holder = e.operation === "PUT" && JSON.parse(new TextDecoder().decode(e.value)).holder;
      if (holder === "a") lastWrite = clock.monotonic();
    }
  })();
  let next: HeldLease | undefined;
  const waiting = b.l.lease("job", { timeout: 5_000 }).then((l) => next = l);
  await clock.advance(TTL / 2);
  await crash(a);
  assert.equal(lastWrite, TTL / 3, "its last renewal");
  await clock.advance(lastWrite + TTL + MARGIN - clock.monotonic());
  assert.equal(next, undefined, "not taken over at ttl + margin of silence");
  await until(clock, () => next !== undefined, 2, "taken over");
  await waiting;
  const silentFor = clock.monotonic() - lastWrite;
  assert.ok(silentFor <= TTL + MARGIN + 1, `taken over late: ${silentFor} ms`);
  watch.stop();
  await loop;
  // The old holder knew it had lost the lease before the new one got it.
  assert.ok(held.signal.aborted);
  assert.ok(held.signal.reason instanceof TimeoutError);
  assert.ok(next!.token > held.token);
  await next!.release();
  await leave(a, b);
});

Deno.test("signal aborts on time when the holder cannot renew", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const lease = await a.l.lease("job"); // sent at 0: held until TTL unless renewed
  let abortedAt = -1;
  lease.signal.addEventListener("abort", () => abortedAt = clock.monotonic());
  await clock.advance(10);
  await crash(a); // every renewal fails from now on
  await clock.advance(TTL - 1 - clock.monotonic());
  assert.equal(lease.signal.aborted, false, "held until its deadline");
  await clock.advance(1);
  assert.equal(abortedAt, TTL, "aborted at its deadline exactly");
  assert.ok(lease.signal.reason instanceof TimeoutError);
  await leave(a);
});

Deno.test("signal aborts when another writer takes the lease over", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const lease = await a.l.lease("job");
  const kv = await a.conn.kv("t_leases");
  const e = await kv.get(encodeToken("job"));
  await kv.update(encodeToken("job"), new TextEncoder().encode("{}"), e!.revision);
  await clock.advance(TTL / 3); // its next renewal conflicts
  assert.ok(lease.signal.aborted);
  assert.ok(lease.signal.reason instanceof ConflictError);
  await lease.release(); // not ours any more: leaves the other writer's record alone
  assert.notEqual(await kv.get(encodeToken("job")), null);
  await leave(a);
});

Deno.test("lock() runs exclusively and releases even when fn throws", async () => {
  const { mesh, clock } = cluster();
  const nodes = [
    await join(mesh, clock, "a"),
    await join(mesh, clock, "b"),
    await join(mesh, clock, "c"),
  ];
  let inside = 0;
  let maxInside = 0;
  let runs = 0;
  const tokens: number[] = [];
  let finished = false;
  const all = Promise.all(
    nodes.flatMap((n) =>
      [0, 1, 2].map(() =>
        n.l.lock("critical", async (lease: HeldLease) => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          tokens.push(lease.token);
          await delay(clock, 5);
          assert.equal(lease.signal.aborted, false);
          inside--;
          runs++;
        }, { timeout: 5_000 })
      )
    ),
  ).finally(() => finished = true);
  await until(clock, () => finished, 9 * 5, "nine locked runs of 5 ms, one after the other");
  await all;
  assert.equal(runs, 9);
  assert.equal(maxInside, 1);
  assert.equal(clock.monotonic(), 9 * 5, "each waiter got the lock the moment it was free");
  assert.deepEqual(tokens, [...tokens].sort((x, y) => x - y));
  await assert.rejects(
    nodes[0]!.l.lock("critical", () => {
      throw new Error("boom");
    }),
    /boom/,
  );
  const again = await nodes[1]!.l.lease("critical", { timeout: 100 });
  await again.release();
  await leave(...nodes);
});

Deno.test("elect() hands leadership over on resign", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  const log: string[] = [];
  const la = a.l.elect("leader", {
    onElected: () => void log.push("a elected"),
    onRevoked: () => void log.push("a revoked"),
  });
  await la.elected;
  assert.equal(la.isLeader, true);
  const lb = b.l.elect("leader", {
    onElected: () => void log.push("b elected"),
    onRevoked: () => void log.push("b revoked"),
  });
  await clock.advance(50);
  assert.equal(lb.isLeader, false);
  await la.resign();
  assert.equal(la.isLeader, false);
  const lease = await lb.elected;
  assert.equal(clock.monotonic(), 50, "elected at once");
  assert.equal(lb.isLeader, true);
  assert.ok(lease.token > 0);
  await lb.resign();
  assert.deepEqual(log, ["a elected", "a revoked", "b elected", "b revoked"]);
  await leave(a, b);
});

Deno.test("elect() elects another node when the leader dies", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  const revoked: string[] = [];
  const la = a.l.elect("leader", { onRevoked: () => void revoked.push("a") });
  await la.elected;
  const lb = b.l.elect("leader", { ttl: TTL });
  await crash(a); // its last write: the acquisition, at 0
  let elected = false;
  void lb.elected.then(() => elected = true);
  await until(clock, () => elected, 2 * (TTL + MARGIN), "b elected");
  assert.equal(clock.monotonic(), TTL + MARGIN + 1, "ttl + margin after a's last write");
  assert.deepEqual(revoked, ["a"]);
  assert.equal(la.isLeader, false);
  assert.equal(lb.isLeader, true);
  await leave(a, b);
});

Deno.test("close() releases every lease and stops waiters and candidates", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  const held = await a.l.lease("one");
  const leader = a.l.elect("two");
  await leader.elected;
  const waiter = a.l.lease("three-held-by-b", { timeout: 5_000 });
  const other = b.l.lease("three-held-by-b");
  const bWaiting = b.l.lease("one", { timeout: 5_000 });
  await a.l.close();
  await assert.rejects(waiter, ClosedError);
  assert.ok(held.signal.aborted);
  assert.equal(leader.isLeader, false);
  const got = await bWaiting;
  assert.equal(clock.monotonic(), 0, "released at once");
  await assert.rejects(a.l.lease("four"), ClosedError);
  const late = a.l.elect("five");
  await assert.rejects(late.elected, ClosedError);
  await got.release();
  await (await other).release();
  await leave(a, b);
});

Deno.test("tokens keep increasing when the leases bucket is deleted and created again", async () => {
  const { mesh, clock } = cluster();
  const a = await join(mesh, clock, "a");
  const b = await join(mesh, clock, "b");
  const tokens: number[] = [];
  for (let i = 0; i < 3; i++) await a.l.lock("job", (l) => void tokens.push(l.token));
  const held = await b.l.lease("other");
  const admin = await mesh.connect({ node: "admin", clock });
  await admin.deleteKv!("t_leases");
  await admin.kv("t_leases"); // created again, as an operator would: revisions restart
  // b's renewal finds no record of its lease in the new bucket
  await until(clock, () => held.signal.aborted, 2 * TTL, "the held lease to be lost");
  // a's handle was opened before the deletion
  await a.l.lock("job", (l) => void tokens.push(l.token));
  await b.l.lock("job", (l) => void tokens.push(l.token));
  for (let i = 1; i < tokens.length; i++) {
    assert.ok(tokens[i]! > tokens[i - 1]!, `tokens ${tokens.join(", ")} strictly increase`);
  }
  const kv = await admin.kv("t_leases");
  assert.ok((await kv.get(encodeToken("job"))) === null, "released");
  await admin.close();
  await leave(a, b);
});
