/**
 * Payload schemas: a payload that fails its handler's schema is refused with `bad_payload`
 * and its issues, and nothing runs or is written: in process, over NATS (a real nats-server)
 * and through the gateway.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { z } from "zod";
import { type ActorError, createSystem, defineActor, type System } from "../mod.ts";
import { gateway } from "../adapters/hono/mod.ts";
import { startNatsCluster, startSystems } from "../adapters/testing/mod.ts";
import { heldSchema, issuesOf, Ledger, seenSchema } from "./schema_fixtures.ts";
import { waitFor, within } from "./helpers.ts";

async function refusal(p: Promise<unknown>): Promise<{ code: string; paths: unknown[] }> {
  try {
    await p;
  } catch (err) {
    return issuesOf(err);
  }
  assert.fail("expected the call to be refused");
}

async function events(system: System, id: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of system.history(Ledger, id)) {
    out.push(`${e.type} ${JSON.stringify(e.payload)}`);
  }
  return out;
}

/** The behaviour every path shares: `caller` sends, `host` has the journal. */
async function refusesBadPayloads(caller: System, host: System): Promise<void> {
  const a = caller.ref(Ledger, "a");
  // Zod: a string, and a negative number, for a positive number
  assert.deepEqual(await refusal(a.ask("deposit", "abc" as never)), {
    code: "bad_payload",
    paths: [[]],
  });
  assert.deepEqual(await refusal(a.ask("deposit", -5)), { code: "bad_payload", paths: [[]] });
  // a tell is refused the same way (the caller hears it: nothing was accepted)
  assert.equal((await refusal(a.tell("deposit", "x" as never))).code, "bad_payload");
  // Valibot: the issues name the nested fields at fault
  const open = await refusal(a.ask("open", { owner: "", limits: { daily: "many" } } as never));
  assert.equal(open.code, "bad_payload");
  assert.deepEqual(open.paths, [["owner"], ["limits", "daily"]]);
  assert.equal(await caller.ref(Ledger, "a").ask("balance"), 0);
  assert.deepEqual(await events(host, "a"), []);
  // good payloads pass
  assert.equal(await a.ask("deposit", 5), 5);
  assert.equal(await a.ask("open", { owner: "ann", limits: { daily: 100 } }), "ann:100");
  assert.deepEqual(await events(host, "a"), ['deposited {"amount":5}', 'opened {"owner":"ann"}']);

  // an input stream: the bad item ends the turn; its events are not written
  const b = caller.ref(Ledger, "b");
  const streamed = await refusal(b.ask("depositAll", [1, 2, 2.5, 4].values()));
  assert.deepEqual(streamed, { code: "bad_payload", paths: [[2]] });
  assert.deepEqual(await events(host, "b"), []);
  assert.equal(await b.ask("depositAll", [1, 2, 3].values()), 6);
  // a stream where one payload is expected, and one payload where a stream is
  assert.equal((await refusal(b.ask("deposit", [1].values() as never))).code, "bad_payload");
  assert.equal((await refusal(b.ask("depositAll", 5 as never))).code, "bad_payload");
  assert.equal((await refusal(b.ask("depositAll", [1, 2]))).code, "bad_payload"); // one value
  assert.equal(await b.ask("balance"), 6);

  // a reply that breaks its output schema is the handler's bug: internal, nothing written
  const c = caller.ref(Ledger, "c");
  assert.equal((await refusal(c.ask("broken", 1))).code, "internal");
  assert.deepEqual(await events(host, "c"), []);
  // each streamed item is checked too: the stream ends with internal at the first bad one
  const seen: number[] = [];
  const err = await refusal((async () => {
    for await (const n of c.stream("countdown", 2)) seen.push(n);
  })());
  assert.equal(err.code, "internal");
  assert.deepEqual(seen, [2, 1]);
  // the payload of a streaming handler is checked before it starts
  assert.equal(
    (await refusal(c.stream("countdown", 11)[Symbol.asyncIterator]().next())).code,
    "bad_payload",
  );
}

Deno.test("schemas: a bad payload is refused with its issues in process, and nothing is written", async () => {
  await using system = await createSystem({ actors: [Ledger], logger: "silent" });
  await refusesBadPayloads(system, system);
});

Deno.test("schemas: a bad payload is refused with its issues over NATS, and nothing is written", async () => {
  await using nats = await startNatsCluster({ servers: 1 });
  await using cluster = await startSystems({
    actors: [Ledger],
    nats,
    nodes: 1,
    system: { logger: "silent" },
  });
  await refusesBadPayloads(cluster.client, cluster.nodes[0]!);
});

Deno.test("schemas: the gateway answers 400 bad_payload with the issues, and nothing is written", async () => {
  await using system = await createSystem({ actors: [Ledger], logger: "silent" });
  const app = new Hono().route("/api", gateway(system, { expose: [Ledger] }));
  const post = async (path: string, body: string) => {
    const res = await app.request(`/api/ledger/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    return { status: res.status, body: await res.json() };
  };
  const bad = await post("g/deposit", '"abc"');
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, "bad_payload");
  assert.deepEqual(bad.body.error.data.issues.map((i: { path: unknown }) => i.path), [[]]);
  assert.equal(typeof bad.body.error.data.issues[0].message, "string");
  const nested = await post("g/open", '{"owner":"","limits":{}}');
  assert.equal(nested.status, 400);
  assert.deepEqual(nested.body.error.data.issues.map((i: { path: unknown }) => i.path), [
    ["owner"],
    ["limits", "daily"],
  ]);
  assert.deepEqual(await events(system, "g"), []);
  assert.deepEqual(await post("g/deposit", "17"), { status: 200, body: 17 });
  assert.deepEqual(await events(system, "g"), ['deposited {"amount":17}']);
});

Deno.test("schemas: over the gateway's WebSocket, a bad input item ends the stream with bad_payload", async () => {
  await using system = await createSystem({ actors: [Ledger], logger: "silent" });
  const app = new Hono().route("/api", gateway(system, { expose: [Ledger] }));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${server.addr.port}/api/ledger/w/shout`);
    const frames: string[] = [];
    const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener("close", resolve));
    ws.onmessage = (e) => frames.push(String(e.data));
    await within(new Promise((r) => (ws.onopen = r)), 5_000, "the socket to open");
    ws.send(JSON.stringify("ab"));
    await waitFor(() => frames.length === 1, 5_000, "the first item back");
    ws.send(JSON.stringify("far too long"));
    const close = await within(closed, 5_000, "the socket to close");
    assert.equal(close.code, 1011);
    assert.equal(frames[0], '"AB"');
    const error = JSON.parse(frames[1]!).error;
    assert.equal(error.code, "bad_payload");
    assert.match(error.message, /input item 1 of ledger\.shout/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("schemas: an asynchronous check keeps the order of an actor's messages", async () => {
  const slow = heldSchema();
  const quick = seenSchema();
  const order: string[] = [];
  const Log = defineActor({
    name: "log",
    initialState: () => 0,
    handlers: {
      slow: { input: slow, handle: (_ctx, n) => void order.push(`slow ${n}`) },
      quick: { input: quick, handle: (_ctx, n) => void order.push(`quick ${n}`) },
      plain: (_ctx, n: number) => void order.push(`plain ${n}`),
    },
  });
  await using system = await createSystem({ actors: [Log], logger: "silent" });
  const log = system.ref(Log, "l");
  const other = system.ref(Log, "other");
  const first = log.ask("slow", 1);
  const sent: Promise<unknown>[] = [first];
  try {
    await waitFor(() => slow.seen.length === 1, 5_000, "the first check to start");
    const second = log.ask("quick", 2); // its own check passes at once, on arrival
    const third = log.ask("plain", 3); // no schema at all
    sent.push(second, third);
    await waitFor(() => quick.seen.length === 1, 5_000, "the second message to reach the check");
    // another actor is not held up by this one's pending check
    await other.ask("plain", 9);
    assert.deepEqual(order, ["plain 9"]);
    slow.release(1);
    await Promise.all(sent);
    assert.deepEqual(order, ["plain 9", "slow 1", "quick 2", "plain 3"]);
    // a refused message does not hold up the ones behind it
    const refused = log.ask("slow", "x" as never);
    const after = log.ask("plain", 4);
    sent.push(refused.catch(() => {}), after);
    await waitFor(() => slow.seen.length === 2, 5_000, "the check of the bad payload to start");
    slow.release("x");
    await assert.rejects(refused, (err: ActorError) => err.code === "bad_payload");
    await after;
    assert.deepEqual(order.slice(-1), ["plain 4"]);
  } finally {
    slow.release(1);
    slow.release("x");
    await Promise.allSettled(sent);
  }
});

Deno.test("schemas: a check that never ends holds an actor's messages only until its deadline", async () => {
  const stuck = heldSchema(); // never released
  const Stuck = defineActor({
    name: "stuck",
    handlers: {
      wait: { input: stuck, handle: () => "ran" },
      ping: () => "pong",
    },
  });
  await using system = await createSystem({ actors: [Stuck], logger: "silent" });
  const ref = system.ref(Stuck, "s");
  const held = ref.ask("wait", 1, { timeout: 200 });
  const behind = ref.ask("ping", undefined, { timeout: 5_000 });
  await assert.rejects(held, (err: ActorError) => err.code === "timeout");
  assert.equal(await behind, "pong");
});

Deno.test("schemas: a schema handler is checked when the type is defined", () => {
  const bad = (handlers: Record<string, unknown>) => () =>
    defineActor({ name: "bad", handlers: handlers as never });
  assert.throws(
    bad({ a: { handle: () => 1 } }),
    /Handler "bad\.a": input is not a Standard Schema/,
  );
  assert.throws(bad({ a: { input: { parse() {} }, handle: () => 1 } }), /not a Standard Schema/);
  assert.throws(
    bad({ a: { input: seenSchema(), output: 5, handle: () => 1 } }),
    /output is not a Standard Schema/,
  );
  assert.throws(bad({ a: { input: seenSchema() } }), /Handler "bad\.a" has no handle\(\) function/);
  assert.throws(bad({ a: 5 }), /is not a function or \{ input, handle \}/);
});

Deno.test("schemas: a stateless worker's payload is checked the same way", async () => {
  const Half = defineActor({
    name: "half",
    stateless: true,
    handlers: { of: { input: z.number().int(), handle: (_ctx, n) => n / 2 } },
  });
  await using system = await createSystem({ actors: [Half], logger: "silent" });
  assert.equal(await system.ref(Half).ask("of", 8), 4);
  assert.deepEqual(await refusal(system.ref(Half).ask("of", 1.5)), {
    code: "bad_payload",
    paths: [[]],
  });
});
