import assert from "node:assert/strict";
import { virtualClock } from "./virtual_clock.ts";
import { delay, TimerWheel, withDeadline } from "./async.ts";

const START = new Date("2026-01-01T00:00:00Z");

Deno.test("virtualClock: time stands still until advance(), then both readings move", async () => {
  const clock = virtualClock(START);
  assert.equal(clock.now(), START.getTime());
  assert.equal(clock.monotonic(), 0);
  await new Promise((r) => setTimeout(r, 20)); // real time passes; virtual time does not
  assert.equal(clock.now(), START.getTime());
  await clock.advance(1500);
  assert.equal(clock.now(), START.getTime() + 1500);
  assert.equal(clock.monotonic(), 1500);
});

Deno.test("virtualClock: advance() runs due timers in order of due time, then of setting", async () => {
  const clock = virtualClock(START);
  const ran: string[] = [];
  clock.setTimeout(() => ran.push(`c@${clock.monotonic()}`), 30);
  clock.setTimeout(() => ran.push(`a@${clock.monotonic()}`), 10);
  clock.setTimeout(() => ran.push(`b@${clock.monotonic()}`), 10);
  const late = clock.setTimeout(() => ran.push("never"), 31);
  await clock.advance(30);
  assert.deepEqual(ran, ["a@10", "b@10", "c@30"]);
  clock.clearTimeout(late);
  await clock.advance(100);
  assert.deepEqual(ran, ["a@10", "b@10", "c@30"], "a cleared timer never runs");
  assert.equal(clock.pending, 0);
});

Deno.test("virtualClock: a handler awaiting a timer finishes before the next timer fires", async () => {
  const clock = virtualClock(START);
  const ran: string[] = [];
  // Like a turn: wakes at 10, then does async work (several promise hops) and a nested timer.
  void (async () => {
    await delay(clock, 10);
    for (let i = 0; i < 20; i++) await Promise.resolve();
    ran.push("first done");
    await delay(clock, 5);
    ran.push(`nested at ${clock.monotonic()}`);
  })();
  clock.setTimeout(() => ran.push(`second at ${clock.monotonic()}`), 11);
  await clock.advance(20);
  assert.deepEqual(ran, ["first done", "second at 11", "nested at 15"]);
});

Deno.test("virtualClock: intervals repeat on their period; set() moves only the wall clock", async () => {
  const clock = virtualClock(START);
  const ticks: number[] = [];
  const id = clock.setInterval(() => ticks.push(clock.monotonic()), 100);
  await clock.advance(350);
  assert.deepEqual(ticks, [100, 200, 300]);
  clock.set(new Date("2027-06-01T00:00:00Z"));
  assert.equal(clock.now(), Date.parse("2027-06-01T00:00:00Z"));
  assert.equal(clock.monotonic(), 350, "the monotonic clock never jumps");
  await clock.advance(50);
  assert.deepEqual(ticks, [100, 200, 300, 400], "timers keep their monotonic schedule");
  assert.equal(clock.now(), Date.parse("2027-06-01T00:00:00Z") + 50);
  clock.set(START); // back in time too
  assert.equal(clock.now(), START.getTime());
  clock.clearInterval(id);
  await clock.advance(1000);
  assert.equal(ticks.length, 4);
});

Deno.test("virtualClock: a zero-delay timer runs without advance(), time stays", async () => {
  const clock = virtualClock(START);
  const ran = await new Promise<number>((resolve) => {
    clock.setTimeout(() => resolve(clock.monotonic()), 0);
  });
  assert.equal(ran, 0);
  // A delay already over (a deadline in the past) resolves too.
  await withDeadline(clock, delay(clock, 0), clock.monotonic() + 1000, () => new Error("late"));
});

Deno.test("virtualClock: a timer callback that throws rejects advance() at that time", async () => {
  const clock = virtualClock(START);
  clock.setTimeout(() => {
    throw new Error("boom");
  }, 10);
  const after = { ran: false };
  clock.setTimeout(() => after.ran = true, 20);
  await assert.rejects(clock.advance(30), /boom/);
  assert.equal(clock.monotonic(), 10);
  assert.equal(after.ran, false);
  await clock.advance(10);
  assert.equal(after.ran, true);
});

Deno.test("virtualClock: a timer that keeps setting itself with no delay is refused", async () => {
  const clock = virtualClock(START);
  const again = () => void clock.setTimeout(again, 0);
  clock.setTimeout(again, 1);
  await assert.rejects(clock.advance(5), /keeps setting itself/);
});

Deno.test("virtualClock: bad arguments are RangeErrors", async () => {
  assert.throws(() => virtualClock(new Date("nope")), RangeError);
  const clock = virtualClock(START);
  await assert.rejects(clock.advance(-1), RangeError);
  await assert.rejects(clock.advance(Infinity), RangeError);
  await assert.rejects(clock.advance(NaN), RangeError);
  assert.throws(() => clock.set(new Date("nope")), RangeError);
});

Deno.test("virtualClock: calls of advance() made at once run one after the other", async () => {
  const clock = virtualClock(START);
  const seen: number[] = [];
  clock.setTimeout(() => seen.push(clock.monotonic()), 15);
  await Promise.all([clock.advance(10), clock.advance(10)]);
  assert.equal(clock.monotonic(), 20);
  assert.deepEqual(seen, [15]);
});

Deno.test("TimerWheel: fires each entry at its deadline exactly, on the wheel's clock", async () => {
  const clock = virtualClock(START);
  const wheel = new TimerWheel(clock, 5);
  const fired: string[] = [];
  wheel.add(1003, () => fired.push(`a@${clock.monotonic()}`));
  wheel.add(1001, () => fired.push(`b@${clock.monotonic()}`));
  const c = wheel.add(1002, () => fired.push("c"));
  wheel.add(2500, () => fired.push(`d@${clock.monotonic()}`));
  wheel.remove(c);
  assert.equal(wheel.size, 3);
  await clock.advance(1001);
  assert.deepEqual(fired, ["b@1001"]);
  await clock.advance(2);
  assert.deepEqual(fired, ["b@1001", "a@1003"]);
  // An entry earlier than the armed one re-arms the wheel.
  wheel.add(1500, () => fired.push(`e@${clock.monotonic()}`));
  await clock.advance(2000);
  assert.deepEqual(fired, ["b@1001", "a@1003", "e@1500", "d@2500"]);
  assert.equal(wheel.size, 0);
  assert.equal(clock.pending, 0, "no timer is left once every entry fired");
});

Deno.test("TimerWheel: an emptied wheel's timer finds nothing and stops; close() fires what is left", async () => {
  const clock = virtualClock(START);
  const wheel = new TimerWheel(clock, 5);
  let fired = 0;
  const a = wheel.add(100, () => fired++);
  assert.equal(clock.pending, 1);
  wheel.remove(a);
  assert.equal(clock.pending, 1, "armed until its time: a lone call pays no timer");
  await clock.advance(100);
  assert.equal(fired, 0, "a removed entry never fires");
  assert.equal(clock.pending, 0, "nothing left: not re-armed");
  let closed = 0;
  wheel.add(50_000, () => closed++);
  wheel.add(60_000, () => closed++);
  wheel.close();
  assert.equal(closed, 2);
  assert.equal(clock.pending, 0);
  wheel.add(10, () => closed++); // a closed wheel arms nothing
  assert.equal(clock.pending, 0);
});
