import assert from "node:assert/strict";
import { wrapJournal } from "./_journal.ts";
import {
  ActorError,
  createSystem,
  defineActor,
  memoryJournal,
  type System,
  TimeoutError,
} from "../mod.ts";
import type { Journal } from "../spi.ts";
import { Account, Counter, Resize, resizeLoad } from "./fixtures.ts";
import { advanceUntil, within } from "./helpers.ts";
import { virtualClock } from "../adapters/testing/mod.ts";
import { delay } from "../src/util/async.ts";

async function withSystem(
  fn: (system: System) => Promise<void>,
  options: Parameters<typeof createSystem>[0] = {},
): Promise<void> {
  const system = await createSystem({ actors: [Account, Counter, Resize], ...options });
  try {
    await fn(system);
  } finally {
    await system.close();
  }
}

Deno.test("ref.ask() applies events and replies with the handler's result", async () => {
  await withSystem(async (system) => {
    const alice = system.ref(Account, "alice");
    assert.equal(await alice.ask("deposit", 100), 100);
    assert.equal(await alice.ask("withdraw", 30), 70);
    assert.equal(await alice.ask("balance"), 70);
    assert.equal(await alice.ask("seq"), 2);
  });
});

Deno.test("a handler's ActorError reaches the caller with its code and message", async () => {
  await withSystem(async (system) => {
    const bob = system.ref(Account, "bob");
    await assert.rejects(bob.ask("withdraw", 5), (err: unknown) => {
      assert.ok(err instanceof ActorError);
      assert.equal(err.code, "insufficient");
      assert.equal(err.message, "insufficient funds");
      return true;
    });
  });
});

Deno.test("a handler that throws rolls back its staged events", async () => {
  await withSystem(async (system) => {
    const c = system.ref(Account, "carol");
    await c.ask("deposit", 10);
    await assert.rejects(c.ask("depositThenFail", 5), { code: "internal" });
    assert.equal(await c.ask("balance"), 10);
    const events = [];
    for await (const e of system.history(Account, "carol")) events.push(e);
    assert.equal(events.length, 1);
  });
});

Deno.test("thrown non-Error values are masked as internal errors", async () => {
  await withSystem(async (system) => {
    const c = system.ref(Counter, "x");
    await assert.rejects(c.ask("throwString"), { code: "internal", message: "Internal error" });
    await assert.rejects(c.ask("throwUndefined"), { code: "internal" });
    assert.equal(await c.ask("inc", 1), 1, "the actor keeps working");
  }, { logger: "silent" });
});

Deno.test("unknown handler is rejected with unknown_handler", async () => {
  await withSystem(async (system) => {
    const c = system.ref(Counter, "x");
    // deno-lint-ignore no-explicit-any
    await assert.rejects((c as any).ask("nope"), { code: "unknown_handler" });
    // a streaming handler called with ask
    // deno-lint-ignore no-explicit-any
    await assert.rejects((system.ref(Account, "a") as any).ask("statement"), {
      code: "unknown_handler",
    });
  });
});

Deno.test("unknown actor type is rejected with unknown_actor_type", async () => {
  const Ghost = defineActor({ name: "ghost", handlers: { boo: () => 1 } });
  await withSystem(async (system) => {
    await assert.rejects(system.ref(Ghost, "g").ask("boo"), { code: "unknown_actor_type" });
  });
});

Deno.test("ref.ask() rejects with timeout when the deadline passes", async () => {
  const { def: Held, state } = heldActor("held");
  const clock = virtualClock();
  const system = await createSystem({ actors: [Held], clock });
  try {
    let outcome = "pending";
    const asked = system.ref(Held, "h").ask("hold", undefined, { timeout: 50 }).then(
      () => outcome = "replied",
      (err) => outcome = err instanceof ActorError ? err.code : String(err),
    );
    await clock.advance(49);
    assert.equal(outcome, "pending");
    await clock.advance(1);
    await asked;
    assert.equal(outcome, "timeout", "rejected at the deadline, while the handler still runs");
  } finally {
    state.gate.resolve();
    await system.close();
  }
});

Deno.test("a full mailbox rejects with overloaded", async () => {
  const { def: Held, state } = heldActor("tiny");
  const Tiny = defineActor({ ...Held, mailboxSize: 2 });
  const system = await createSystem({ actors: [Tiny] });
  try {
    const t = system.ref(Tiny, "t");
    const first = t.ask("hold");
    await state.started.promise; // first is running now
    const queued = [t.ask("hold"), t.ask("hold")];
    await assert.rejects(t.ask("hold"), { code: "overloaded" });
    state.gate.resolve();
    assert.deepEqual(await Promise.all([first, ...queued]), [1, 2, 3]);
  } finally {
    await system.close();
  }
});

Deno.test("messages from one sender are handled in order, one at a time", async () => {
  const clock = virtualClock();
  const Log = defineActor({
    name: "log",
    initialState: () => ({ items: [] as number[], running: 0, maxRunning: 0 }),
    handlers: {
      async add(ctx, n: number) {
        ctx.state.running++;
        ctx.state.maxRunning = Math.max(ctx.state.maxRunning, ctx.state.running);
        await delay(clock, [3, 0, 2, 1][n % 4]!); // turns of different lengths
        ctx.state.items.push(n);
        ctx.state.running--;
      },
      get: (ctx) => ctx.state,
    },
  });
  const system = await createSystem({ actors: [Log], clock });
  try {
    const l = system.ref(Log, "l");
    await Promise.all(Array.from({ length: 50 }, (_, i) => l.tell("add", i)));
    let s: { items: number[]; maxRunning: number } | undefined;
    const got = l.ask("get").then((v) => s = v);
    await advanceUntil(clock, () => s !== undefined, 1_000, "the 50 turns");
    await got;
    assert.equal(clock.monotonic(), 75, "one turn after the other: 12 × (3 + 0 + 2 + 1) + 3");
    assert.deepEqual(s!.items, Array.from({ length: 50 }, (_, i) => i));
    assert.equal(s!.maxRunning, 1);
  } finally {
    await system.close();
  }
});

Deno.test("state is recovered from the journal after a restart (snapshot + events)", async () => {
  const journal = memoryJournal();
  let system = await createSystem({ actors: [Account], journal });
  for (let i = 0; i < 25; i++) await system.ref(Account, "dave").ask("deposit", 1);
  await system.close();
  system = await createSystem({ actors: [Account], journal });
  assert.equal(await system.ref(Account, "dave").ask("balance"), 25);
  assert.equal(await system.ref(Account, "dave").ask("seq"), 25);
  await system.close();
  await journal.close();
});

Deno.test("an idempotency key applies a message once and returns the first reply", async () => {
  const journal = memoryJournal();
  let system = await createSystem({ actors: [Account], journal });
  const e = system.ref(Account, "erin");
  assert.equal(await e.ask("deposit", 10, { idempotencyKey: "tx-1" }), 10);
  assert.equal(await e.ask("deposit", 10, { idempotencyKey: "tx-1" }), 10);
  assert.equal(await e.ask("deposit", 5, { idempotencyKey: "tx-2" }), 15);
  await system.close();
  system = await createSystem({ actors: [Account], journal });
  assert.equal(
    await system.ref(Account, "erin").ask("deposit", 10, { idempotencyKey: "tx-1" }),
    10,
    "remembered across restarts",
  );
  assert.equal(await system.ref(Account, "erin").ask("balance"), 15);
  await system.close();
  await journal.close();
});

Deno.test("ref.stream() yields a streaming handler's items", async () => {
  await withSystem(async (system) => {
    const a = system.ref(Account, "s");
    await a.ask("deposit", 7);
    const items = [];
    for await (const item of a.stream("statement", 4)) items.push(item);
    assert.deepEqual(items.map((i) => i.line), [0, 1, 2, 3]);
    assert.equal(items[0]!.balance, 7);
  });
});

Deno.test("a slow stream consumer slows the producer (bounded buffer)", async () => {
  let produced = 0;
  const Gen = defineActor({
    name: "gen",
    handlers: {
      async *numbers(_ctx, n: number) {
        for (let i = 0; i < n; i++) {
          produced++;
          yield i;
        }
      },
    },
  });
  const clock = virtualClock();
  const system = await createSystem({ actors: [Gen], clock });
  try {
    const stream = system.ref(Gen, "g").stream("numbers", 1000, { window: 4 });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    await clock.advance(0); // the producer runs as far as it can
    assert.ok(produced <= 6, `producer ran ahead by ${produced}`);
    await it.return!();
    await clock.advance(0);
    assert.ok(produced <= 7);
  } finally {
    await system.close();
  }
});

Deno.test("stateless workers run concurrently and need no id", async () => {
  await withSystem(async (system) => {
    const r = system.ref(Resize);
    resizeLoad.max = 0;
    const out = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => r.ask("thumbnail", n)));
    assert.deepEqual(out, [1, 2, 3, 4, 5, 6].map((n) => `thumb-${n}`));
    assert.equal(resizeLoad.max, 4, "up to `concurrency` (4) instances at once, no more");
  });
});

Deno.test("publish/subscribe with wildcards and groups", async () => {
  const clock = virtualClock();
  await withSystem(async (system) => {
    const got: string[] = [];
    const grouped: string[] = [];
    const a = system.subscribe("orders.*", (_m, topic) => void got.push(topic));
    const g1 = system.subscribe("orders.>", () => void grouped.push("g1"), { group: "billing" });
    const g2 = system.subscribe("orders.>", () => void grouped.push("g2"), { group: "billing" });
    await system.publish("orders.created", { id: 1 });
    await system.publish("orders.paid.card", { id: 1 });
    await clock.advance(0); // delivered: no time needs to pass
    assert.deepEqual(got, ["orders.created"]);
    assert.equal(grouped.length, 2, "each message to one member of the group");
    a.unsubscribe();
    g1.unsubscribe();
    g2.unsubscribe();
  }, { clock });
});

Deno.test("A → B → A call chains fail fast with deadlock", async () => {
  const Ping = defineActor({
    name: "ping",
    handlers: {
      async ping(ctx, depth: number): Promise<number> {
        if (depth === 0) return 0;
        return await ctx.ref(Pong, ctx.id).ask("pong", depth - 1);
      },
    },
  });
  const Pong = defineActor({
    name: "pong",
    handlers: {
      async pong(ctx, depth: number): Promise<number> {
        return await ctx.ref(Ping, ctx.id).ask("ping", depth);
      },
    },
  });
  const clock = virtualClock();
  const system = await createSystem({ actors: [Ping, Pong], clock });
  try {
    await assert.rejects(system.ref(Ping, "p").ask("ping", 2, { timeout: 5_000 }), {
      code: "deadlock",
    });
    assert.equal(clock.monotonic(), 0, "at once, not at the timeout");
  } finally {
    await system.close();
  }
});

Deno.test("nested asks inherit the caller's remaining deadline", async () => {
  // The inner ask asks for 10 s but runs inside a turn whose caller gave it 150 ms: it must
  // reject with `timeout` at the outer deadline. The outer caller times out at that same
  // moment, so what the inner ask observed is reported through `inner`.
  let inner: { err: unknown; ms: number } | undefined;
  const release = Promise.withResolvers<void>();
  const clock = virtualClock();
  const Held = defineActor({ name: "held", handlers: { hold: () => release.promise } });
  const Outer = defineActor({
    name: "outer",
    handlers: {
      async call(ctx) {
        const t0 = clock.monotonic();
        try {
          await ctx.ref(Held, "h").ask("hold", undefined, { timeout: 10_000 });
          inner = { err: undefined, ms: clock.monotonic() - t0 };
        } catch (err) {
          inner = { err, ms: clock.monotonic() - t0 };
        }
      },
    },
  });
  const system = await createSystem({ actors: [Outer, Held], clock });
  try {
    const outer = assert.rejects(
      system.ref(Outer, "o").ask("call", undefined, { timeout: 150 }),
      { code: "timeout" },
    );
    await advanceUntil(clock, () => inner !== undefined, 10_000, "the inner ask to settle");
    await outer;
    const seen = inner!;
    assert.ok(seen.err instanceof TimeoutError, `inner ask rejected with ${seen.err}`);
    assert.equal(seen.err.code, "timeout");
    assert.equal(seen.ms, 150, "the inner ask gave up at the outer deadline");
  } finally {
    release.resolve();
    await system.close();
  }
});

Deno.test("idle actors are passivated and reactivated from the journal", async () => {
  let activations = 0;
  let passivations = 0;
  const Idle = defineActor({
    name: "idle",
    initialState: () => 0,
    events: { added: (s, n: number) => s + n },
    handlers: {
      add(ctx, n: number) {
        ctx.emit("added", n);
        return ctx.state;
      },
    },
    idleAfter: 30,
    onActivate: () => void activations++,
    onPassivate: () => void passivations++,
  });
  const clock = virtualClock();
  const system = await createSystem({ actors: [Idle], clock });
  try {
    const r = system.ref(Idle, "i");
    assert.equal(await r.ask("add", 2), 2);
    await clock.advance(30);
    assert.equal(passivations, 0, "not idle past idleAfter yet");
    await clock.advance(15); // the sweep runs every idleAfter / 2
    assert.equal(passivations, 1);
    assert.equal(await system.directory.locate(Idle, "i"), undefined);
    assert.equal(await r.ask("add", 3), 5);
    assert.equal(activations, 2);
  } finally {
    await system.close();
  }
});

Deno.test("ctx.schedule() fires a durable reminder, also after a restart", async () => {
  const fired: string[] = [];
  const Remind = defineActor({
    name: "remind",
    initialState: () => 0,
    events: { set: (s) => s + 1 },
    handlers: {
      set(ctx, ms: number) {
        ctx.emit("set", undefined);
        ctx.schedule(ms, "ring", `after ${ms}`);
      },
      ring(_ctx, what: string) {
        fired.push(what);
      },
    },
  });
  const clock = virtualClock();
  const journal = memoryJournal({ now: clock.now });
  let system = await createSystem({ actors: [Remind], journal, clock });
  await system.ref(Remind, "r").ask("set", 20);
  await system.ref(Remind, "r").ask("set", 300);
  await clock.advance(19);
  assert.deepEqual(fired, []);
  await clock.advance(1);
  assert.deepEqual(fired, ["after 20"], "fired when due");
  await clock.advance(100);
  await system.close(); // down while the second is due
  await clock.advance(300);
  assert.deepEqual(fired, ["after 20"]);
  system = await createSystem({ actors: [Remind], journal, clock });
  await clock.advance(0); // overdue: fired as soon as the service runs again
  assert.deepEqual(fired, ["after 20", "after 300"]);
  await clock.advance(60_000);
  assert.deepEqual(fired, ["after 20", "after 300"], "fires once after the restart");
  await system.close();
  await journal.close();
});

Deno.test("close() drains messages in flight and rejects later ones", async () => {
  const system = await createSystem({ actors: [Counter] });
  const c = system.ref(Counter, "c");
  const inflight = [c.ask("slow", 30), c.ask("inc", 1), c.ask("inc", 1)];
  const closing = system.close();
  assert.deepEqual(await Promise.all(inflight), [0, 1, 2]);
  await closing;
  await assert.rejects(c.ask("inc", 1), { code: "closed" });
});

Deno.test("event versions: older events are upcast on replay and in history()", async () => {
  const journal = memoryJournal();
  const V1 = defineActor({
    name: "wallet",
    initialState: () => 0,
    events: { credited: (s, e: { cents: number }) => s + e.cents / 100 },
    handlers: {
      credit(ctx, cents: number) {
        ctx.emit("credited", { cents });
        return ctx.state;
      },
    },
  });
  let system = await createSystem({ actors: [V1], journal });
  await system.ref(V1, "w").ask("credit", 250);
  await system.close();
  const V2 = defineActor({
    name: "wallet",
    initialState: () => 0,
    events: { credited: (s, e: { amount: number }) => s + e.amount },
    upcasters: { credited: { 1: (p) => ({ amount: (p as { cents: number }).cents / 100 }) } },
    handlers: {
      credit(ctx, amount: number) {
        ctx.emit("credited", { amount });
        return ctx.state;
      },
    },
  });
  system = await createSystem({ actors: [V2], journal });
  assert.equal(await system.ref(V2, "w").ask("credit", 1), 3.5);
  const events = [];
  for await (const e of system.history(V2, "w")) events.push(e.payload);
  assert.deepEqual(events, [{ amount: 2.5 }, { amount: 1 }]);
  await system.close();
  await journal.close();
});

/** A memory journal whose appends can be held back or made to fail. */
function gatedJournal() {
  const base = memoryJournal();
  let gate: Promise<void> | undefined;
  let failNext = false;
  const journal: Journal = {
    ...base,
    activate: (a, c) => base.activate(a, c),
    release: (a, n, e) => base.release(a, n, e),
    owner: (a) => base.owner(a),
    pruneIdempotency: (n) => base.pruneIdempotency(n),
    shards: base.shards,
    shardOf: (a) => base.shardOf(a),
    readCommitted: (s, a, l) => base.readCommitted(s, a, l),
    read: (a, f, l) => base.read(a, f, l),
    reply: (a, k) => base.reply(a, k),
    dueReminders: (n, l) => base.dueReminders(n, l),
    nextReminder: () => base.nextReminder(),
    deleteReminder: (id) => base.deleteReminder(id),
    close: () => base.close(),
    async append(a) {
      if (gate) await gate;
      if (failNext) {
        failNext = false;
        throw new Error("disk on fire");
      }
      return base.append(a);
    },
  };
  return {
    journal,
    hold() {
      let open!: () => void;
      gate = new Promise((r) => open = r);
      return () => {
        gate = undefined;
        open();
      };
    },
    failNextAppend: () => void (failNext = true),
  };
}

Deno.test("a reply leaves only after its events are durable", async () => {
  const g = gatedJournal();
  const clock = virtualClock();
  const system = await createSystem({ actors: [Account], journal: g.journal, clock });
  try {
    const a = system.ref(Account, "durable");
    await a.ask("deposit", 1);
    const release = g.hold();
    let replied = false;
    const pending = a.ask("deposit", 2).then((v) => {
      replied = true;
      return v;
    });
    await clock.advance(1000); // everything that can run runs; a second passes
    assert.equal(replied, false, "no reply while the append is not committed");
    release();
    assert.equal(await pending, 3);
  } finally {
    await system.close();
    await g.journal.close();
  }
});

Deno.test("a journal failure ends the activation; the next message reactivates it from the log", async () => {
  const g = gatedJournal();
  const system = await createSystem({ actors: [Account], journal: g.journal, logger: "silent" });
  try {
    const a = system.ref(Account, "fragile");
    assert.equal(await a.ask("deposit", 5), 5);
    g.failNextAppend();
    await assert.rejects(a.ask("deposit", 100), { code: "unavailable" });
    assert.equal(await a.ask("balance"), 5, "the failed turn left nothing behind");
    assert.equal(await a.ask("deposit", 1), 6);
  } finally {
    await system.close();
    await g.journal.close();
  }
});

Deno.test("close() while an actor is still activating waits for it and completes", async () => {
  const activating = Promise.withResolvers<void>();
  const wake = Promise.withResolvers<void>();
  const Sleepy = defineActor({
    name: "sleepy",
    initialState: () => 0,
    events: { woke: (s) => s + 1 },
    handlers: { ping: (ctx) => ctx.state },
    onActivate: () => {
      activating.resolve();
      return wake.promise;
    },
  });
  const system = await createSystem({ actors: [Sleepy] });
  const reply = system.ref(Sleepy, "s").ask("ping");
  await activating.promise; // activation under way
  const closing = system.close();
  wake.resolve();
  await closing;
  assert.equal(await reply, 0, "the message queued during activation was handled");
});

/** An actor whose `hold` handler runs until the test opens `gate` (one turn at a time). */
function heldActor(name: string) {
  const state = {
    started: Promise.withResolvers<void>(),
    gate: Promise.withResolvers<void>(),
    handled: 0,
  };
  const def = defineActor({
    name,
    handlers: {
      async hold() {
        state.started.resolve();
        await state.gate.promise;
        return ++state.handled;
      },
      count: () => state.handled,
    },
  });
  return { def, state };
}

Deno.test("AskOptions.signal: aborting it rejects the ask with the signal's reason", async () => {
  const { def: Held, state } = heldActor("held-abort");
  const system = await createSystem({ actors: [Held] });
  try {
    const h = system.ref(Held, "h");
    const ac = new AbortController();
    const asked = h.ask("hold", undefined, { signal: ac.signal, timeout: 10_000 });
    await within(state.started.promise, 2_000, "the handler to start");
    const reason = new Error("the user gave up");
    ac.abort(reason);
    // The handler is still held: only the abort can settle the ask.
    await within(
      assert.rejects(asked, (err: unknown) => err === reason),
      1_000,
      "the aborted ask to reject",
    );
    // Without a reason the caller gets the signal's default one (an AbortError).
    const ac2 = new AbortController();
    const asked2 = h.ask("count", undefined, { signal: ac2.signal });
    ac2.abort();
    await within(
      assert.rejects(asked2, (err: unknown) => err === ac2.signal.reason),
      1_000,
      "the second aborted ask to reject",
    );
    assert.equal((ac2.signal.reason as Error).name, "AbortError");
    state.gate.resolve();
    // A signal that never aborts changes nothing.
    assert.equal(await h.ask("count", undefined, { signal: new AbortController().signal }), 1);
  } finally {
    state.gate.resolve();
    await system.close();
  }
});

Deno.test("AskOptions.signal: an already aborted signal rejects at once", async () => {
  const { def: Held, state } = heldActor("held-pre");
  const system = await createSystem({ actors: [Held] });
  try {
    const h = system.ref(Held, "h");
    const busy = h.ask("hold");
    await within(state.started.promise, 2_000, "the handler to start");
    // The actor is busy until the gate opens, so a reply cannot be what settles these.
    const reason = new Error("cancelled before sending");
    await within(
      assert.rejects(
        h.ask("count", undefined, { signal: AbortSignal.abort(reason) }),
        (err: unknown) => err === reason,
      ),
      1_000,
      "the ask with an aborted signal to reject",
    );
    await within(
      assert.rejects(
        h.tell("count", undefined, { signal: AbortSignal.abort(reason) }),
        (err: unknown) => err === reason,
      ),
      1_000,
      "the tell with an aborted signal to reject",
    );
    state.gate.resolve();
    assert.equal(await busy, 1);
    assert.equal(await h.ask("count"), 1, "the actor keeps serving");
  } finally {
    state.gate.resolve();
    await system.close();
  }
});

Deno.test("a snapshot of another version is ignored: the state is replayed from the log", async () => {
  const base = memoryJournal();
  const snapshots: { seq: number; version: number }[] = [];
  const journal: Journal = wrapJournal(base, {
    async append(a) {
      await base.append(a);
      if (a.snapshot) snapshots.push({ seq: a.snapshot.seq, version: a.snapshot.version });
    },
  });
  let reduced = 0; // reducer calls: during an activation, the events replayed
  const V1 = defineActor({
    name: "tally",
    snapshotEvery: 5,
    snapshotVersion: 1,
    initialState: () => ({ sum: 0 }),
    events: { added: (s, e: { by: number }) => (reduced++, { sum: s.sum + e.by }) },
    handlers: {
      add(ctx, by: number) {
        ctx.emit("added", { by });
      },
      get: (ctx) => ctx.state,
    },
  });
  // v2 keeps a count too: a v1 snapshot ({ sum }) would leave it undefined.
  const V2 = defineActor({
    name: "tally",
    snapshotEvery: 5,
    snapshotVersion: 2,
    initialState: () => ({ sum: 0, count: 0 }),
    events: {
      added: (s, e: { by: number }) => (reduced++, { sum: s.sum + e.by, count: s.count + 1 }),
    },
    handlers: {
      add(ctx, by: number) {
        ctx.emit("added", { by });
      },
      get: (ctx) => ctx.state,
    },
  });
  const restart = async (def: typeof V1 | typeof V2) => {
    const system = await createSystem({ actors: [def], journal });
    reduced = 0;
    const state: unknown = await system.ref(def as typeof V2, "t").ask("get");
    return { system, state, replayed: reduced };
  };
  try {
    let system = await createSystem({ actors: [V1], journal });
    for (let i = 1; i <= 12; i++) await system.ref(V1, "t").ask("add", i);
    await system.close();
    assert.ok(snapshots.length > 0, "v1 wrote snapshots");
    assert.ok(snapshots.every((s) => s.version === 1), JSON.stringify(snapshots));

    // Same version: the snapshot is used, only the events after it are replayed.
    let r = await restart(V1);
    await r.system.close();
    assert.deepEqual(r.state, { sum: 78 });
    assert.ok(r.replayed < 12, `v1 replayed ${r.replayed} of 12 events despite its snapshot`);

    // Another version: the v1 snapshot is ignored, all 12 events are replayed.
    r = await restart(V2);
    system = r.system;
    assert.deepEqual(r.state, { sum: 78, count: 12 });
    assert.equal(r.replayed, 12, "every event is replayed");
    for (let i = 13; i <= 18; i++) await system.ref(V2, "t").ask("add", i);
    await system.close();
    assert.ok(snapshots.some((s) => s.version === 2), "v2 writes its own snapshots");

    r = await restart(V2);
    await r.system.close();
    assert.deepEqual(r.state, { sum: 171, count: 18 });
    assert.ok(r.replayed < 18, `v2 replayed ${r.replayed} of 18 events despite its snapshot`);
  } finally {
    await journal.close();
  }
});

Deno.test({
  name: "a reply larger than maxPayload rejects with bad_payload locally too",

  fn: async () => {
    const Big = defineActor({
      name: "big",
      handlers: { reply: (_ctx, n: number) => "x".repeat(n) },
    });
    const system = await createSystem({ actors: [Big], maxPayload: 4096 });
    try {
      const b = system.ref(Big, "b");
      assert.equal((await b.ask("reply", 1000)).length, 1000);
      await assert.rejects(b.ask("reply", 10_000), { code: "bad_payload" });
      assert.equal((await b.ask("reply", 1000)).length, 1000, "the actor keeps serving");
    } finally {
      await system.close();
    }
  },
});

Deno.test("a stream whose handler throws gives the items, then the handler's error", async () => {
  const Feed = defineActor({
    name: "feed",
    handlers: {
      async *items(_ctx, n: number) {
        for (let i = 0; i < n; i++) yield i;
        throw new ActorError("feed broke", { code: "feed_broken", data: { after: n } });
      },
    },
  });
  await withSystem(async (system) => {
    const got: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const i of system.ref(Feed, "f").stream("items", 5, { window: 2 })) {
          got.push(i);
        }
      })(),
      (err: unknown) => {
        assert.ok(err instanceof ActorError, `the stream ended with ${err}`);
        assert.equal(err.code, "feed_broken");
        assert.equal(err.message, "feed broke");
        assert.deepEqual(err.data, { after: 5 });
        return true;
      },
    );
    assert.deepEqual(got, [0, 1, 2, 3, 4], "every item before the error");
  }, { actors: [Feed] });
});

Deno.test({
  name: "a tell resolves once accepted, even when its handler then throws",

  fn: async () => {
    const Teller = defineActor({
      name: "teller",
      handlers: {
        ok: () => 1,
        fail() {
          throw new ActorError("no", { code: "refused" });
        },
      },
    });
    await withSystem(async (system) => {
      const t = system.ref(Teller, "t");
      assert.equal(await t.ask("ok"), 1); // active and idle: the next message runs at once
      await t.tell("fail");
      assert.equal(await t.ask("ok"), 1, "the actor keeps serving");
    }, { actors: [Teller] });
  },
});

Deno.test({
  name: "StreamOptions.signal: aborting it ends the stream with the signal's reason",

  fn: async () => {
    await withSystem(async (system) => {
      const reason = new Error("stop");
      const got: unknown[] = [];
      await assert.rejects(
        (async () => {
          const stream = system.ref(Account, "s").stream("statement", 3, {
            signal: AbortSignal.abort(reason),
          });
          for await (const item of stream) got.push(item);
        })(),
        (err: unknown) => err === reason,
      );
      assert.deepEqual(got, []);
      const ac = new AbortController();
      const opts = { signal: ac.signal, window: 1 };
      const it = system.ref(Account, "s").stream("statement", 1000, opts)[Symbol.asyncIterator]();
      await it.next();
      ac.abort(reason);
      await within(
        (async () => {
          for (;;) if ((await it.next()).done) return;
        })().then(() => assert.fail("the stream ended without the reason"), (err) => {
          assert.equal(err, reason);
        }),
        2_000,
        "the aborted stream to end",
      );
    });
  },
});

Deno.test("a caller's loop of in-process asks lets timers run and the node keep its lease", async () => {
  // In-process asks complete on microtasks alone; without a macrotask now and then the node's
  // heartbeat (a timer) would wait for the loop, and the node would fence itself after its
  // lease's time to live (300 ms here) and refuse every call.
  await withSystem(async (system) => {
    const ref = system.ref(Counter, "tight");
    await ref.ask("inc", 1);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    try {
      const until = performance.now() + 1_500; // five times the lease's time to live
      let asks = 0;
      while (performance.now() < until) {
        await ref.ask("get");
        asks++;
      }
      assert.ok(asks > 1_000, `only ${asks} asks in 1.5 s`);
      assert.equal(system.status(), "running");
      assert.ok(ticks > 0, "a timer ran while the loop asked");
      assert.equal(await ref.ask("inc", 1), 2);
    } finally {
      clearInterval(timer);
    }
  }, { leaseTtl: 300 });
});
