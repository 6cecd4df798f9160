import assert from "node:assert/strict";
import { addressKey, Buckets, Counters, Deadlines } from "./_limits.ts";

Deno.test("Buckets: burst at once, then rate per second; the wait is whole seconds", () => {
  const b = new Buckets({ rate: 2, burst: 3 }, "test");
  assert.deepEqual([0, 0, 0].map(() => b.take("k", 1_000)), [0, 0, 0]);
  assert.equal(b.take("k", 1_000), 1); // empty: one token comes in 500 ms → 1 s
  assert.equal(b.take("k", 1_500), 0); // 0.5 s later: one token
  assert.equal(b.take("k", 1_500), 1);
  assert.equal(b.take("other", 1_500), 0, "keys are apart");
  assert.equal(b.take("k", 1_000), 1, "a clock step back refills nothing");
  assert.throws(() => new Buckets({ rate: 0 }, "limits.perIp"), /limits\.perIp\.rate/);
  assert.throws(() => new Buckets({ rate: 1, burst: 0.5 }, "limits.perIp"), /burst/);
});

Deno.test("Buckets: a flood of new keys is bounded; the oldest are forgotten first", () => {
  const b = new Buckets({ rate: 1, burst: 1 }, "test", 100);
  assert.equal(b.take("first", 0), 0);
  assert.equal(b.take("first", 0), 1);
  for (let i = 0; i < 1_000; i++) b.take(`k${i}`, 0);
  assert.equal(b.size, 100);
  assert.equal(b.take("first", 0), 0, "forgotten: a full bucket again (laxer, never stricter)");
});

Deno.test("Counters: at most max per key; a key at zero is forgotten", () => {
  const c = new Counters(2);
  assert.equal(c.acquire("a"), true);
  assert.equal(c.acquire("a"), true);
  assert.equal(c.acquire("a"), false);
  assert.equal(c.acquire("b"), true);
  c.release("a");
  assert.equal(c.acquire("a"), true);
  c.release("b");
  assert.equal(c.get("b"), 0);
});

Deno.test("addressKey: IPv4 as it is, IPv6 cut to its /64, v4-mapped as IPv4", () => {
  assert.equal(addressKey("203.0.113.7"), "203.0.113.7");
  assert.equal(addressKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8:1:2::99"), "2001:db8:1:2::/64");
  assert.equal(addressKey("[2001:DB8:0001:0002::1]"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(addressKey("::1"), "0:0:0:0::/64");
  assert.equal(addressKey("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.equal(addressKey("::ffff:198.51.100.2"), "198.51.100.2");
});

Deno.test("Deadlines: fire after their time, in order, not when removed", async () => {
  const d = new Deadlines(30, () => new Error("late"), 5);
  const fired: string[] = [];
  const a = d.add((err) => fired.push(`a ${(err as Error).message}`));
  const b = d.add(() => fired.push("b"));
  d.remove(b);
  const started = performance.now();
  while (fired.length === 0) {
    assert.ok(performance.now() - started < 2_000, "fired within 2 s");
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(performance.now() - started >= 25, "not before its time");
  assert.deepEqual(fired, ["a late"]);
  d.remove(a); // fired already: nothing
});
