import assert from "node:assert/strict";
import type { Subscription } from "../../mod.ts";
import { topicResponse, topicRules } from "./_topics.ts";

const decoder = new TextDecoder();

function fixture(o: { maxBuffered?: number; stallTimeout?: number; lifetime?: number } = {}) {
  let deliver!: (p: unknown) => void;
  let unsubscribed = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => resolveDone = r);
  let doneCount = 0;
  const sub: Subscription = {
    topic: "t",
    ready: Promise.resolve(),
    unsubscribe: () => void unsubscribed++,
    [Symbol.dispose]: () => void unsubscribed++,
  };
  const drain = new AbortController();
  const res = topicResponse(sub, (d) => deliver = d, {
    keepAlive: 0,
    maxBuffered: o.maxBuffered ?? 1 << 20,
    stallTimeout: o.stallTimeout ?? 60_000,
    lifetime: o.lifetime ?? 60_000,
    signal: drain.signal,
    onDone: () => {
      doneCount++;
      resolveDone();
    },
  });
  return {
    res,
    deliver: (p: unknown) => deliver(p),
    done,
    drain,
    get unsubscribed() {
      return unsubscribed;
    },
    get doneCount() {
      return doneCount;
    },
  };
}

async function read(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const r = await reader.read();
  return r.done ? "<done>" : decoder.decode(r.value);
}

Deno.test("topic stream: a reader that keeps up gets every message in order", async () => {
  const f = fixture();
  const reader = f.res.body!.getReader();
  assert.equal(await read(reader), ": topic\n\n");
  f.deliver({ a: 1 });
  f.deliver("two");
  assert.equal(await read(reader), 'data: {"a":1}\n\n');
  assert.equal(await read(reader), 'data: "two"\n\n');
  await reader.cancel();
  assert.equal(f.unsubscribed, 1);
  assert.equal(f.doneCount, 1);
});

Deno.test("topic stream: a client more than maxBuffered bytes behind is cut off at once", async () => {
  const f = fixture({ maxBuffered: 100 });
  const reader = f.res.body!.getReader();
  assert.equal(await read(reader), ": topic\n\n");
  for (let i = 0; i < 3; i++) f.deliver("x".repeat(20)); // 3 × 30 bytes: still within
  assert.equal(f.doneCount, 0);
  f.deliver("x".repeat(20)); // 120 bytes queued
  assert.equal(f.doneCount, 1);
  assert.ok(f.unsubscribed >= 1);
  await assert.rejects(reader.read(), /fell behind/);
});

Deno.test("topic stream: a client that takes nothing while messages wait is cut off after stallTimeout", async () => {
  const f = fixture({ stallTimeout: 50 });
  const reader = f.res.body!.getReader();
  assert.equal(await read(reader), ": topic\n\n");
  const t0 = performance.now();
  f.deliver("waiting");
  await f.done;
  assert.ok(performance.now() - t0 >= 40);
  await assert.rejects(reader.read(), /took nothing/);
});

Deno.test("topic stream: it ends with event: end after its lifetime, and with event: error on drain", async () => {
  const life = fixture({ lifetime: 30 });
  const r1 = life.res.body!.getReader();
  assert.equal(await read(r1), ": topic\n\n");
  assert.equal(await read(r1), "event: end\ndata: null\n\n");
  assert.equal(await read(r1), "<done>");
  const drained = fixture();
  const r2 = drained.res.body!.getReader();
  assert.equal(await read(r2), ": topic\n\n");
  drained.drain.abort(new Error("shutting down"));
  assert.match(await read(r2), /^event: error\ndata: \{"code":"internal"/);
  assert.equal(await read(r2), "<done>");
});

Deno.test("topicRules: the first pattern covering the request decides", () => {
  const rules = topicRules({ "chat.*": "public", "chat.>": "authenticated" });
  assert.equal(rules.ruleFor("chat.a"), "public");
  assert.equal(rules.ruleFor("chat.a.b"), "authenticated");
  assert.equal(rules.ruleFor("chat.>"), "authenticated");
  assert.equal(rules.ruleFor("news.a"), undefined);
  assert.equal(rules.needsCaller, true);
  assert.equal(topicRules({ "a.*": "public" }).needsCaller, false);
});
