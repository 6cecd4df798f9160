/**
 * Tests written as a user would write them: a system on `virtualClock()`, time moved with
 * `advance(ms)`. Hours of reminders, idle passivation, leases, TTLs and deadlines, each in
 * milliseconds of real time, and each deterministic (no real time decides an outcome).
 */
import assert from "node:assert/strict";
import { ActorError, createSystem, defineActor, inProcessMesh, memoryJournal } from "../mod.ts";
import { virtualClock } from "../adapters/testing/mod.ts";

const START = new Date("2026-01-01T00:00:00Z");
const HOUR = 3_600_000;

const Alarm = defineActor({
  name: "alarm",
  initialState: () => ({ rang: [] as number[] }),
  events: { rang: (s, e: { at: number }) => ({ rang: [...s.rang, e.at] }) },
  handlers: {
    set(ctx, ms: number) {
      ctx.schedule(ms, "ring", undefined);
    },
    ring(ctx) {
      ctx.emit("rang", { at: Date.now() }); // the handler's own reading is real time
    },
    rang: (ctx) => ctx.state.rang.length,
  },
});

Deno.test("virtual clock: a reminder due in an hour fires after advance(3_600_000), not before", async () => {
  const clock = virtualClock(START);
  const system = await createSystem({ actors: [Alarm], clock, logger: "error" });
  try {
    const alarm = system.ref(Alarm, "wake-up");
    await alarm.ask("set", HOUR);
    const real = performance.now();
    await clock.advance(HOUR - 1);
    assert.equal(await alarm.ask("rang"), 0, "not due yet");
    await clock.advance(1);
    assert.equal(await alarm.ask("rang"), 1, "fired once it was due");
    await clock.advance(HOUR);
    assert.equal(await alarm.ask("rang"), 1, "and only once");
    assert.ok(performance.now() - real < 20_000, "two hours took seconds at most");
    assert.equal(clock.now(), START.getTime() + 2 * HOUR);
  } finally {
    await system.close();
  }
});

Deno.test("virtual clock: setting the wall clock past a reminder's time fires it at the next poll", async () => {
  const clock = virtualClock(START);
  const system = await createSystem({ actors: [Alarm], clock, logger: "error" });
  try {
    const alarm = system.ref(Alarm, "tomorrow");
    await alarm.ask("set", 24 * HOUR);
    await clock.advance(60_000);
    assert.equal(await alarm.ask("rang"), 0);
    clock.set(new Date(START.getTime() + 25 * HOUR)); // an operator moves the clock a day on
    await clock.advance(1_000); // the service polls at least every second
    assert.equal(await alarm.ask("rang"), 1);
  } finally {
    await system.close();
  }
});

Deno.test("virtual clock: an actor idle past idleAfter passivates, then reactivates from its log", async () => {
  const lifecycle: string[] = [];
  const Cart = defineActor({
    name: "cart",
    idleAfter: 10 * 60_000,
    initialState: () => ({ items: [] as string[] }),
    events: { added: (s, e: { item: string }) => ({ items: [...s.items, e.item] }) },
    handlers: {
      add(ctx, item: string) {
        ctx.emit("added", { item });
        return ctx.state.items.length;
      },
      items: (ctx) => ctx.state.items,
    },
    onActivate(ctx) {
      lifecycle.push(`activate ${ctx.state.items.length}`);
    },
    onPassivate() {
      lifecycle.push("passivate");
    },
  });
  const clock = virtualClock(START);
  const system = await createSystem({ actors: [Cart], clock, logger: "error" });
  try {
    const cart = system.ref(Cart, "u1");
    await cart.ask("add", "apple");
    await cart.ask("add", "pear");
    assert.equal(await system.directory.locate(Cart, "u1"), system.node);
    await clock.advance(9 * 60_000);
    assert.deepEqual(lifecycle, ["activate 0"], "idle for 9 minutes: still active");
    await clock.advance(2 * 60_000);
    assert.deepEqual(lifecycle, ["activate 0", "passivate"], "idle past 10 minutes: passivated");
    assert.equal(await system.directory.locate(Cart, "u1"), undefined);
    assert.deepEqual(await cart.ask("items"), ["apple", "pear"], "state rebuilt from the log");
    assert.deepEqual(lifecycle, ["activate 0", "passivate", "activate 2"]);
  } finally {
    await system.close();
  }
});

Deno.test("virtual clock: an ask times out at its deadline, not a millisecond before", async () => {
  let release: (() => void) | undefined;
  const Slow = defineActor({
    name: "slow",
    handlers: {
      wait: () => new Promise<string>((resolve) => release = () => resolve("done")),
      ping: () => "pong",
    },
  });
  const clock = virtualClock(START);
  const system = await createSystem({ actors: [Slow], clock, logger: "error" });
  try {
    const slow = system.ref(Slow, "s");
    let outcome: unknown = undefined;
    const asked = slow.ask("wait", undefined, { timeout: 5_000 }).then(
      (v) => outcome = v,
      (err) => outcome = err,
    );
    await clock.advance(4_999);
    assert.equal(outcome, undefined, "still waiting 1 ms before the deadline");
    await clock.advance(1);
    await asked;
    const err = outcome as unknown;
    assert.ok(err instanceof ActorError && err.code === "timeout", String(err));
    release!(); // the turn ends; the actor takes the next message
    assert.equal(await slow.ask("ping"), "pong");
  } finally {
    await system.close();
  }
});

Deno.test("virtual clock: a store record's TTL ends on the clock, and the purge removes it", async () => {
  const clock = virtualClock(START);
  const system = await createSystem({ clock, logger: "error" });
  try {
    const sessions = system.store<{ user: string }>("sessions");
    await sessions.set("s1", { user: "ann" }, { ttl: 15 * 60_000 });
    await sessions.set("s2", { user: "bob" });
    await clock.advance(15 * 60_000 - 1);
    assert.deepEqual((await sessions.get("s1"))?.value, { user: "ann" });
    await clock.advance(1);
    assert.equal(await sessions.get("s1"), undefined, "expired at its TTL");
    const keys: string[] = [];
    for await (const r of sessions.list()) keys.push(r.key);
    assert.deepEqual(keys, ["s2"]);
  } finally {
    await system.close();
  }
});

Deno.test("virtual clock: a lease holder that stops renewing loses it; a waiter takes over", async () => {
  const clock = virtualClock(START);
  const mesh = inProcessMesh({ leaseTtl: 10_000, clock });
  const journal = memoryJournal({ now: clock.now });
  const a = await createSystem({ mesh, journal, clock, node: "a", logger: "error" });
  const b = await createSystem({ mesh, journal, clock, node: "b", logger: "error" });
  try {
    const held = await a.lease("billing", { ttl: 5_000 });
    let taken: Awaited<ReturnType<typeof b.lease>> | undefined;
    const waiting = b.lease("billing", { ttl: 5_000 }).then((l) => taken = l);
    await clock.advance(60_000);
    assert.equal(held.signal.aborted, false, "renewed every ttl / 3 for a minute");
    assert.equal(taken, undefined, "the waiter still waits");
    await a.close(); // its leases are released: the waiter gets it at once
    await clock.advance(0);
    await waiting;
    assert.ok(held.signal.aborted);
    assert.ok(taken!.token > held.token, "a larger fencing token");
    await taken!.release();
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("virtual clock: a cron reminder runs at each of its times, is replaced by name, and cancelled by name", async () => {
  const clock = virtualClock(START);
  const runs: string[] = [];
  const Report = defineActor({
    name: "report",
    initialState: () => 0,
    events: { ran: (n: number, _e: null) => n + 1 },
    handlers: {
      every(ctx, cron: string) {
        ctx.schedule(cron, "run", cron, { name: "report" });
      },
      stop(ctx) {
        ctx.cancel("report");
      },
      run(ctx, cron: string) {
        runs.push(`${cron} @ ${new Date(clock.now()).toISOString().slice(11, 19)}`);
        ctx.emit("ran", null);
      },
      ran: (ctx) => ctx.state,
    },
  });
  const system = await createSystem({ actors: [Report], clock, logger: "error" });
  try {
    const report = system.ref(Report, "daily");
    await report.ask("every", "*/5 * * * *"); // every five minutes
    await clock.advance(15 * 60_000);
    assert.deepEqual(runs, [
      "*/5 * * * * @ 00:05:00",
      "*/5 * * * * @ 00:10:00",
      "*/5 * * * * @ 00:15:00",
    ]);
    // the same name replaces it: hourly from now on, the five-minute one is gone
    await report.ask("every", "0 * * * *");
    await clock.advance(HOUR);
    assert.deepEqual(runs.slice(3), ["0 * * * * @ 01:00:00"]);
    await report.ask("stop");
    await clock.advance(3 * HOUR);
    assert.equal(runs.length, 4, "cancelled by name: no run after stop");
    assert.equal(await report.ask("ran"), 4);
  } finally {
    await system.close();
  }
});
