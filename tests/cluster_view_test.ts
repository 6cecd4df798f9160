/** `system.cluster`: what the nodes report about themselves, asked over the mesh. */
import assert from "node:assert/strict";
import { createSystem, inProcessMesh, memoryJournal } from "../mod.ts";
import { Account, Counter, Resize } from "./fixtures.ts";

Deno.test("system.cluster.stats() gathers every node's own report over the mesh", async () => {
  const mesh = inProcessMesh();
  const journal = memoryJournal();
  await using _a = await createSystem({ node: "a", actors: [Account], mesh, journal });
  await using _b = await createSystem({ node: "b", actors: [Counter, Resize], mesh, journal });
  await using client = await createSystem({ node: "c", mesh, journal });

  await client.ref(Account, "alice").ask("deposit", 5);
  await client.ref(Account, "bob").ask("deposit", 1);
  await client.ref(Counter, "c1").ask("inc", 1);
  await client.ref(Resize).ask("where");
  await assert.rejects(client.ref(Account, "alice").ask("withdraw", 100), /insufficient/);

  const stats = await client.cluster.stats();
  assert.deepEqual(stats.nodes.map((n) => n.id), ["a", "b", "c"]);
  assert.deepEqual(stats.unreachable, []);
  const [na, nb, nc] = stats.nodes;
  assert.deepEqual(na!.types, ["account"]);
  assert.equal(na!.status, "running");
  const account = na!.actors.find((t) => t.type === "account")!;
  assert.equal(account.activations, 2);
  assert.equal(account.messages, 3);
  assert.equal(account.errors, 1);
  assert.equal(account.lastError, "insufficient: insufficient funds");
  assert.ok(account.rate > 0);
  assert.deepEqual(na!.errors.map((e) => [e.where, e.code, e.type, e.id, e.handler]), [
    ["handled", "insufficient", "account", "alice", "withdraw"],
  ]);
  // The caller's node keeps the errors its calls got.
  assert.deepEqual(nc!.errors.map((e) => [e.where, e.code, e.handler]), [
    ["sent", "insufficient", "withdraw"],
  ]);
  const counter = nb!.actors.find((t) => t.type === "counter")!;
  assert.equal(counter.activations, 1);
  assert.equal(counter.stateless, false);
  const resize = nb!.actors.find((t) => t.type === "resize")!;
  assert.equal(resize.stateless, true);
  assert.equal(resize.messages, 1);
  assert.deepEqual(nc!.actors, []);
  // The reminder service's leadership is a lease one of the hosting nodes holds.
  const leases = stats.nodes.flatMap((n) => n.leases.map((l) => l.name));
  assert.ok(leases.some((name) => name.endsWith("-reminders")), `leases: ${leases}`);

  // A caller that gives up sees its own abort, kept as "aborted" (not an internal error).
  const gaveUp = new AbortController();
  const slow = client.ref(Counter, "c1").ask("slow", 200, { signal: gaveUp.signal });
  gaveUp.abort();
  await assert.rejects(slow, { name: "AbortError" });
  assert.equal((await client.cluster.node("c")).errors[0]!.code, "aborted");

  assert.equal((await client.cluster.node("b")).id, "b");
  await assert.rejects(client.cluster.node("nobody", { timeout: 200 }), { code: "unavailable" });
});

Deno.test("system.cluster.inspect() says where an actor runs, its seq and its last events", async () => {
  const mesh = inProcessMesh();
  const journal = memoryJournal();
  await using a = await createSystem({ node: "a", actors: [Account], mesh, journal });
  await using client = await createSystem({ node: "c", mesh, journal });
  const alice = client.ref(Account, "alice");
  for (let i = 1; i <= 30; i++) await alice.ask("deposit", i);

  const report = await client.cluster.inspect("account", "alice", { events: 5 });
  assert.equal(report.node, "a");
  assert.equal(report.seq, 30);
  assert.deepEqual(report.events.map((e) => e.seq), [26, 27, 28, 29, 30]);
  assert.deepEqual(report.events.at(-1)!.payload, { amount: 30 });
  assert.ok(report.events[0]!.at instanceof Date);

  // Not active anywhere: a host of the type answers from the journal.
  await a.close();
  await using _a2 = await createSystem({ node: "a2", actors: [Account], mesh, journal });
  const cold = await client.cluster.inspect("account", "alice", { events: 2 });
  assert.equal(cold.node, undefined);
  assert.equal(cold.answeredBy, "a2");
  assert.equal(cold.seq, 30);
  assert.deepEqual(cold.events.map((e) => e.seq), [29, 30]);
  const none = await client.cluster.inspect("account", "nobody");
  assert.deepEqual([none.seq, none.events.length], [0, 0]);
  await assert.rejects(client.cluster.inspect("ghost", "x"), { code: "unknown_actor_type" });
});
