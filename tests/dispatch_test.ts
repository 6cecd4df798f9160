/**
 * The message path's limits and shutdown rules, as a caller sees them (in-process mesh).
 */
import assert from "node:assert/strict";
import { rawBody, rawRequest } from "./_wire.ts";
import { ActorError, createSystem, defineActor, inProcessMesh } from "../mod.ts";
import { startSystems, virtualClock } from "../adapters/testing/mod.ts";
import { delay } from "../src/util/async.ts";
import { advanceUntil, waitFor } from "./helpers.ts";

/** A promise with its resolver, to hold handlers until the test lets them go. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => open = r);
  return { promise, open };
}

function code(err: unknown): string {
  return err instanceof ActorError ? err.code : `not an ActorError: ${err}`;
}

Deno.test("mailboxSize counts waiting messages the same way for a starting and an active actor", async () => {
  let hold = gate();
  let started = gate();
  const Box = defineActor({
    name: "box",
    initialState: () => 0,
    mailboxSize: 5,
    handlers: {
      async slow(ctx) {
        started.open();
        await hold.promise;
        return ++ctx.state;
      },
      fast: (ctx) => ctx.state,
    },
  });
  const system = await createSystem({ actors: [Box] });
  try {
    // A fresh actor (still activating): 1 to run + 5 waiting are accepted, the 7th is not.
    const fresh = system.ref(Box, "fresh");
    const accepted = Array.from({ length: 6 }, () => fresh.ask("slow"));
    await assert.rejects(fresh.ask("fast"), { code: "overloaded" });
    // An active actor busy with one message: the same 1 + 5.
    const warm = system.ref(Box, "warm");
    await warm.ask("fast");
    started = gate();
    const running = warm.ask("slow");
    await started.promise; // its turn runs: the mailbox is empty again
    const waiting = Array.from({ length: 5 }, () => warm.ask("slow"));
    await assert.rejects(warm.ask("fast"), { code: "overloaded" });
    hold.open();
    assert.deepEqual(await Promise.all(accepted), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(await Promise.all([running, ...waiting]), [1, 2, 3, 4, 5, 6]);
    hold = gate();
    hold.open();
  } finally {
    await system.close();
  }
});

Deno.test("1000 tells then an ask at once to a fresh actor: the ask is not refused", async () => {
  const Sink = defineActor({
    name: "sink",
    initialState: () => 0,
    handlers: { add: (ctx, n: number) => (ctx.state += n), get: (ctx) => ctx.state },
  });
  const system = await createSystem({ actors: [Sink] });
  try {
    const ref = system.ref(Sink, "s");
    const tells = Array.from({ length: 1000 }, () => ref.tell("add", 1));
    const total = ref.ask("get");
    await Promise.all(tells);
    assert.equal(await total, 1000);
  } finally {
    await system.close();
  }
});

Deno.test("ids longer than 256 bytes are refused with bad_payload before anything is sent", async () => {
  let activated = 0;
  const Thing = defineActor({
    name: "thing",
    initialState: () => 0,
    onActivate: () => void activated++,
    handlers: { ping: () => "pong" },
  });
  const system = await createSystem({ actors: [Thing] });
  try {
    await assert.rejects(system.ref(Thing, "x".repeat(4100)).ask("ping"), (err) => {
      assert.equal(code(err), "bad_payload");
      assert.match((err as Error).message, /256 bytes/);
      return true;
    });
    // multi-byte characters count in bytes: 100 × "é" (2 bytes) fits, 86 × "€" (3 bytes) does not
    assert.equal(await system.ref(Thing, "é".repeat(100)).ask("ping"), "pong");
    await assert.rejects(system.ref(Thing, "€".repeat(86)).tell("ping"), { code: "bad_payload" });
    assert.equal(await system.ref(Thing, "x".repeat(256)).ask("ping"), "pong");
    assert.equal(activated, 2);
  } finally {
    await system.close();
  }
});

Deno.test("maxActivations: least recently used idle actors passivate, busy ones give overloaded", async () => {
  const active = new Set<string>();
  let most = 0;
  let hold = gate();
  const Reg = defineActor({
    name: "reg",
    initialState: () => 0,
    events: { set: (_s, v: number) => v },
    onActivate(ctx) {
      active.add(ctx.id);
      most = Math.max(most, active.size);
    },
    onPassivate(ctx) {
      active.delete(ctx.id);
    },
    handlers: {
      get: (ctx) => ctx.state,
      set(ctx, v: number) {
        ctx.emit("set", v);
        return ctx.state;
      },
      async block() {
        await hold.promise;
      },
    },
  });
  const system = await createSystem({ actors: [Reg], maxActivations: 3 });
  try {
    for (let i = 0; i < 20; i++) await system.ref(Reg, `r${i}`).ask("set", i);
    assert.ok(most <= 3, `at most 3 active at once, saw ${most}`);
    // state survives passivation: r0 was evicted long ago and comes back from its log
    assert.equal(await system.ref(Reg, "r0").ask("get"), 0);
    assert.equal(await system.ref(Reg, "r17").ask("get"), 17);
    // three busy actors fill the node: a fourth cannot be activated
    const busy = [0, 1, 2].map((i) => system.ref(Reg, `b${i}`).ask("block"));
    await waitFor(() => active.has("b0") && active.has("b1") && active.has("b2"), 2000, "busy");
    await assert.rejects(system.ref(Reg, "r5").ask("get"), { code: "overloaded" });
    hold.open();
    await Promise.all(busy);
    assert.equal(await system.ref(Reg, "r5").ask("get"), 5);
    hold = gate();
    hold.open();
  } finally {
    await system.close();
  }
});

Deno.test("close() ends within its drain bound even when a handler never settles", async () => {
  const never = new Promise<never>(() => {});
  const started = gate();
  const Stuck = defineActor({
    name: "stuck",
    initialState: () => 0,
    handlers: {
      hang: () => {
        started.open();
        return never;
      },
      ping: () => "pong",
    },
  });
  const clock = virtualClock();
  const system = await createSystem({ actors: [Stuck], drainTimeout: 200, clock });
  const answer = (p: Promise<unknown>) => p.then((v) => `resolved ${v}`, code);
  const hung = answer(system.ref(Stuck, "s").ask("hang", undefined, { timeout: 60_000 }));
  const queued = answer(system.ref(Stuck, "s").ask("ping", undefined, { timeout: 60_000 }));
  await started.promise;
  let closed = false;
  const closing = system.close().then(() => closed = true);
  // the mailbox drains for 200 ms, then the running turn gets 200 ms more and is abandoned
  const took = await advanceUntil(clock, () => closed, 60_000, "close() to end");
  await closing;
  assert.equal(took, 400, `close() took ${took} ms of its clock`);
  // both callers are answered: nothing waits for its 60 s timeout
  assert.equal(await hung, "unavailable", "the abandoned turn's caller");
  assert.ok(["unavailable", "closed"].includes(await queued), "the queued message's caller");
});

Deno.test("a stream ends with timeout at its deadline even while its consumer keeps reading", async () => {
  const clock = virtualClock();
  const Ticker = defineActor({
    name: "ticker",
    initialState: () => 0,
    handlers: {
      async *ticks() {
        for (let i = 0;; i++) {
          yield i;
          await delay(clock, 1); // one item a millisecond
        }
      },
      ping: () => "pong",
    },
  });
  const system = await createSystem({ actors: [Ticker], clock });
  try {
    let items = 0;
    await assert.rejects(
      (async () => {
        for await (
          const _ of system.ref(Ticker, "t").stream("ticks", undefined, { timeout: 300 })
        ) {
          items++;
          await clock.advance(1); // the consumer keeps reading, and time goes on
        }
      })(),
      { code: "timeout" },
    );
    assert.equal(clock.monotonic(), 300, "ended at its deadline");
    assert.ok(items >= 299 && items <= 301, `items flowed until then (${items})`);
    // the actor is free again
    assert.equal(await system.ref(Ticker, "t").ask("ping"), "pong");
  } finally {
    await system.close();
  }
});

Deno.test("timeouts: one rule for every path (NaN and ≤ 0 refused, Infinity capped)", async () => {
  const Echo = defineActor({
    name: "echo",
    stateless: true,
    handlers: { echo: (_ctx, v: string) => v },
  });
  const systems = await startSystems({ actors: [Echo], nodes: 1 });
  try {
    for (const system of [systems.nodes[0]!, systems.client]) {
      const ref = system.ref(Echo);
      for (const timeout of [NaN, 0, -1]) {
        await assert.rejects(ref.ask("echo", "x", { timeout }), RangeError);
      }
      assert.equal(await ref.ask("echo", "x", { timeout: Infinity }), "x");
      assert.equal(await ref.ask("echo", "y", { timeout: 2 ** 40 }), "y");
    }
  } finally {
    await systems.close();
  }
});

Deno.test("a keyed ask to a stateless worker runs once when its node shuts down gracefully", async () => {
  let runs = 0;
  let runningOn = "";
  const started = gate();
  const clock = virtualClock();
  const Job = defineActor({
    name: "job",
    stateless: true,
    handlers: {
      async run(ctx, ms: number) {
        runs++;
        runningOn = ctx.node;
        started.open();
        await delay(clock, ms);
        return ctx.node;
      },
    },
  });
  const systems = await startSystems({ actors: [Job], nodes: 2, system: { clock } });
  try {
    const reply = systems.client.ref(Job, "k").ask("run", 300, { idempotencyKey: "job-1" });
    await started.promise;
    // The node running it shuts down while the work runs (no time passes before the drain):
    // it finishes the work and answers before it leaves.
    let closed = false;
    const closing = systems.nodes.find((n) => n.node === runningOn)!.close().then(() =>
      closed = true
    );
    await clock.advance(299);
    assert.equal(closed, false, "the node waits for the work");
    await advanceUntil(clock, () => closed, 1_000, "the node to close");
    await closing;
    assert.equal(clock.monotonic(), 300, "it closed once the work was done");
    assert.equal(await reply, runningOn);
    assert.equal(runs, 1, "the work ran once");
  } finally {
    await systems.close();
  }
});

Deno.test("requests left in a mailbox past the drain bound are resent to another node, not dropped", async () => {
  const clock = virtualClock();
  const ranOn = new Map<string, number>();
  const Acc = defineActor({
    name: "acc",
    initialState: () => 0,
    events: { added: (s, n: number) => s + n },
    handlers: {
      async add(ctx, n: number) {
        await delay(clock, 20);
        ctx.emit("added", n);
        ranOn.set(ctx.node, (ranOn.get(ctx.node) ?? 0) + 1);
        return ctx.state;
      },
      where: (ctx) => ctx.node,
      total: (ctx) => ctx.state,
    },
  });
  const systems = await startSystems({
    actors: [Acc],
    nodes: 2,
    system: { logger: "error", drainTimeout: 50, clock },
  });
  try {
    const ref = systems.client.ref(Acc, "a");
    const first = await ref.ask("where");
    const owner = systems.nodes.find((n) => n.node === first)!;
    let settled = false;
    const asks = Promise.allSettled(Array.from(
      { length: 20 },
      (_, i) => ref.ask("add", 1, { idempotencyKey: `add-${i}`, timeout: 10_000 }),
    )).finally(() => settled = true);
    await clock.advance(0); // all 20 reach the owner's mailbox; no time passes
    let closed = -1;
    const closing = owner.close().then(() => closed = clock.monotonic());
    // 20 ms a message: the owner handles two within its 50 ms drain bound and the third it
    // started; the rest are answered "send it elsewhere" and go to the other node
    await advanceUntil(clock, () => settled, 10_000, "every ask to be answered");
    await closing;
    assert.equal(closed, 60, "the owner closed once its running turn ended");
    const failures = (await asks).filter((r) => r.status === "rejected").map((r) =>
      code((r as PromiseRejectedResult).reason)
    );
    assert.deepEqual(failures, [], `every ask was answered: ${failures}`);
    assert.equal(ranOn.get(owner.node), 3, "the owner drained what it could in 50 ms");
    assert.equal(ranOn.get(systems.nodes.find((n) => n !== owner)!.node), 17, "resent");
    assert.equal(await ref.ask("total"), 20);
  } finally {
    await systems.close();
  }
});

Deno.test("a request whose reply subject is not an inbox is refused: nothing runs, nothing is published there", async () => {
  let runs = 0;
  const Echo = defineActor({
    name: "echo",
    stateless: true,
    handlers: { echo: (_ctx, v: number) => (runs++, v) },
  });
  const mesh = inProcessMesh();
  const systems = await startSystems({ actors: [Echo], nodes: 1, mesh });
  const raw = await mesh.connect({ node: "intruder" });
  const hijacked: string[] = [];
  const spy = raw.subscribe(`${mesh.prefix}.>`, (m) => void hijacked.push(m.subject));
  try {
    const node = systems.nodes[0]!.node;
    const subject = `${mesh.prefix}.n.${node}.echo`;
    for (const reply of [`${mesh.prefix}.t.evil`, subject, "$KV.x.y"]) {
      raw.publish(subject, rawBody({ type: "echo", handler: "echo" }, Uint8Array.of(0x05)), {
        reply,
      });
    }
    // an inbox reply still works, and arrives after the refused ones would have
    const ok = await rawRequest(
      raw,
      subject,
      rawBody({ type: "echo", handler: "echo" }, Uint8Array.of(0x07)),
    );
    assert.deepEqual(ok, { status: "ok", value: 7 });
    assert.equal(runs, 1, "only the request with an inbox reply ran");
    assert.deepEqual(
      hijacked.filter((s) => !s.startsWith(`${mesh.prefix}.n.`)),
      [],
      "nothing was published where the sender pointed",
    );
  } finally {
    spy.unsubscribe();
    await raw.close();
    await systems.close();
  }
});
