/**
 * Output gates and idempotency at the activation: the next turn runs while the previous
 * commit is in flight, every output (reply, message sent, publish, stream item) leaves only
 * once the events it depends on are durable, a failed or fenced commit refuses what it held,
 * and an idempotency key answers only the call it was stored for.
 */
import assert from "node:assert/strict";
import { waitFor } from "./helpers.ts";
import { type ActorError, createSystem, defineActor, memoryJournal } from "../mod.ts";
import type { Journal } from "../spi.ts";
import type { Append } from "../src/journal/types.ts";

/** A memory journal whose appends can be held, then let through or failed. */
function holdable() {
  const base = memoryJournal();
  let gate: PromiseWithResolvers<Error | undefined> | undefined;
  const calls: Append[] = [];
  let heldNow = 0;
  const journal: Journal = new Proxy(base, {
    get(target, prop) {
      if (prop === "append") {
        return async (a: Append) => {
          calls.push(a);
          const g = gate;
          if (g) {
            heldNow++;
            const failure = await g.promise;
            heldNow--;
            if (failure) throw failure;
          }
          return target.append(a);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return {
    journal,
    base,
    /** Every append call so far. */
    calls,
    /** Appends waiting now. */
    get held(): number {
      return heldNow;
    },
    /** Holds appends from now on. */
    hold(): void {
      gate = Promise.withResolvers();
    },
    /** Lets the held appends through, or fails each with `error` (nothing written). */
    release(error?: Error): void {
      const g = gate;
      gate = undefined;
      g?.resolve(error);
    },
  };
}

/** Which of `promises` have settled, by index. */
function tracker<T>(promises: Promise<T>[]): { settled: () => number[] } {
  const done = new Set<number>();
  promises.forEach((p, i) => p.then(() => done.add(i), () => done.add(i)));
  return { settled: () => [...done].sort() };
}

const runs = new Map<string, number>();
const notes: number[] = [];

const Counter = defineActor({
  name: "counter",
  initialState: () => ({ total: 0 }),
  events: { added: (s, e: { n: number }) => ({ total: s.total + e.n }) },
  handlers: {
    add(ctx, n: number) {
      runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
      ctx.emit("added", { n });
      return ctx.state.total;
    },
    get: (ctx) => ctx.state.total,
    /** Emits, then tells the note taker (the tell must leave after the event is durable). */
    forward(ctx, n: number) {
      ctx.emit("added", { n });
      void ctx.ref(Notes, "n").tell("note", n);
      return ctx.state.total;
    },
    /** Emits, then asks the note taker and waits for its answer (no deadlock). */
    async relay(ctx, n: number) {
      ctx.emit("added", { n });
      const seen = await ctx.ref(Notes, "n").ask("note", n);
      return { total: ctx.state.total, seen };
    },
    announce(ctx, n: number) {
      ctx.emit("added", { n });
      ctx.publish("counter.added", n);
      return ctx.state.total;
    },
    async *count(ctx, upTo: number) {
      for (let i = 1; i <= upTo; i++) {
        ctx.emit("added", { n: 1 });
        yield ctx.state.total;
      }
    },
    /** A handler with no effects at all. */
    peek: (ctx) => ({ total: ctx.state.total }),
  },
});

/** Records what it is told; answers how many notes it has. */
const Notes = defineActor({
  name: "notes",
  initialState: () => 0,
  handlers: {
    note(_ctx, n: number) {
      notes.push(n);
      return notes.length;
    },
    count: () => notes.length,
  },
});

async function system(journal: Journal) {
  return await createSystem({ actors: [Counter, Notes], journal, logger: "silent" });
}

Deno.test("the next turn runs while the previous commit is in flight; each reply leaves once its events are durable", async () => {
  const h = holdable();
  const s = await system(h.journal);
  try {
    const c = s.ref(Counter, "hot");
    assert.equal(await c.ask("add", 0), 0); // activated
    h.hold();
    const asks = [c.ask("add", 1), c.ask("add", 2), c.ask("add", 3), c.ask("get")];
    const t = tracker(asks);
    // All three handlers ran and handed their appends to the journal, behind the first.
    await waitFor(() => runs.get("hot") === 4 && h.calls.length === 4, 3000, "three turns ran");
    await waitFor(() => h.held === 3, 3000, "three appends held");
    assert.deepEqual(h.calls.slice(1).map((a) => a.expectedSeq), [1, 2, 3], "chained appends");
    // The read after them (`get`) waits too: its answer depends on events not yet durable.
    assert.deepEqual(t.settled(), [], "no reply before the commit");
    h.release();
    assert.deepEqual(await Promise.all(asks), [1, 3, 6, 6]);
    assert.deepEqual((await h.base.read("counter/hot", 1, 10)).map((e) => e.seq), [1, 2, 3, 4]);
  } finally {
    h.release();
    await s.close();
  }
});

Deno.test("a failed commit refuses every held reply with unavailable; the actor is rebuilt from its log", async () => {
  const h = holdable();
  const s = await system(h.journal);
  try {
    const c = s.ref(Counter, "fails");
    assert.equal(await c.ask("add", 10), 10);
    h.hold();
    const asks = [c.ask("add", 1), c.ask("add", 2), c.ask("get")];
    await waitFor(() => h.held === 2, 3000, "two appends held");
    h.release(new Error("disk on fire"));
    for (const r of await Promise.allSettled(asks)) {
      assert.equal(r.status, "rejected");
      assert.equal((r.reason as ActorError).code, "unavailable", String(r.reason));
    }
    // A new activation starts from the log: the refused turns never happened.
    assert.equal(await c.ask("get"), 10);
    assert.equal(await c.ask("add", 5), 15);
  } finally {
    h.release();
    await s.close();
  }
});

Deno.test("a fenced writer's held replies are refused, none acknowledged without its event", async () => {
  const h = holdable();
  const s = await system(h.journal);
  try {
    const c = s.ref(Counter, "fenced");
    assert.equal(await c.ask("add", 1), 1);
    h.hold();
    const asks = [c.ask("add", 2), c.ask("add", 3)];
    await waitFor(() => h.held === 2, 3000, "two appends held");
    // Another node activates the actor meanwhile: a newer epoch fences this activation.
    await h.base.activate("counter/fenced");
    h.release();
    const acknowledged: number[] = [];
    for (const r of await Promise.allSettled(asks)) {
      if (r.status === "fulfilled") acknowledged.push(r.value as number);
      else assert.equal((r.reason as ActorError).code, "unavailable", String(r.reason));
    }
    assert.deepEqual(acknowledged, [], "nothing acknowledged");
    // The log holds exactly the first event: none of the refused turns.
    assert.deepEqual((await h.base.read("counter/fenced", 1, 10)).map((e) => e.seq), [1]);
  } finally {
    h.release();
    await s.close();
  }
});

Deno.test("a message a turn sends leaves only once the events emitted before it are durable", async () => {
  const h = holdable();
  const s = await system(h.journal);
  notes.length = 0;
  try {
    const c = s.ref(Counter, "sender");
    const n = s.ref(Notes, "n");
    assert.equal(await n.ask("count"), 0);
    await c.ask("add", 0);
    h.hold();
    const forwarded = c.ask("forward", 7);
    await waitFor(() => h.held === 1, 3000, "the append held");
    // An ask to the note taker now queues behind the tell if the tell had left: it has not.
    assert.equal(await n.ask("count"), 0);
    h.release();
    assert.equal(await forwarded, 7);
    await waitFor(async () => (await n.ask("count")) === 1, 3000, "the tell arrived");
    assert.deepEqual(notes, [7]);
    // A handler that awaits the answer of an ask it sent: its events before the ask are
    // committed first, so the ask leaves and the turn ends (no deadlock).
    h.hold();
    const relayed = c.ask("relay", 5);
    await waitFor(() => h.held === 1, 3000, "the relay's first append held");
    assert.equal(await n.ask("count"), 1, "the relay's ask waits for the commit");
    h.release();
    assert.deepEqual(await relayed, { total: 12, seen: 2 });
    assert.deepEqual((await h.base.read("counter/sender", 1, 10)).length, 3);
  } finally {
    h.release();
    await s.close();
  }
});

Deno.test("a publish and a stream item leave only once their events are durable", async () => {
  const h = holdable();
  const s = await system(h.journal);
  const seen: unknown[] = [];
  const sub = s.subscribe("counter.*", (msg) => void seen.push(msg));
  try {
    const c = s.ref(Counter, "pub");
    await c.ask("add", 0);
    h.hold();
    const announced = c.ask("announce", 4);
    await waitFor(() => h.held === 1, 3000, "the append held");
    await s.publish("counter.marker", "marker"); // delivered in order after anything earlier
    await waitFor(() => seen.length === 1, 3000, "the marker");
    assert.deepEqual(seen, ["marker"], "the publish waits for the commit");
    h.release();
    assert.equal(await announced, 4);
    await waitFor(() => seen.length === 2, 3000, "the publish");
    assert.deepEqual(seen, ["marker", 4]);
    // A stream: each item after the event of its step is durable.
    h.hold();
    const it = c.stream("count", 2)[Symbol.asyncIterator]();
    const first = it.next();
    const t = tracker([first]);
    await waitFor(() => h.held === 1, 3000, "the first step's append held");
    assert.deepEqual(t.settled(), []);
    h.release();
    assert.deepEqual(await first, { value: 5, done: false });
    assert.deepEqual(await it.next(), { value: 6, done: false });
    assert.equal((await it.next()).done, true);
    assert.equal((await h.base.read("counter/pub", 1, 10)).length, 4);
  } finally {
    h.release();
    sub.unsubscribe();
    await s.close();
  }
});

Deno.test("an idempotency key reused for another call is refused with conflict, never answered with the stored reply", async () => {
  const journal = memoryJournal();
  const s = await system(journal);
  try {
    const c = s.ref(Counter, "idem");
    assert.equal(await c.ask("add", 1, { idempotencyKey: "k" }), 1);
    // The same call again: the stored reply, applied once.
    assert.equal(await c.ask("add", 1, { idempotencyKey: "k" }), 1);
    // Another payload, another handler: conflict.
    for (const [handler, payload] of [["add", 2], ["get", undefined], ["peek", undefined]]) {
      await assert.rejects(
        c.ask(handler as "add", payload as number, { idempotencyKey: "k" }),
        (err: ActorError) => {
          assert.equal(err.code, "conflict");
          assert.match(err.message, /idempotency key reused for another call/);
          return true;
        },
      );
    }
    assert.equal(await c.ask("get"), 1, "applied once");
  } finally {
    await s.close();
  }
  // A new activation (nothing in memory) checks the stored fingerprint the same way.
  const again = await system(journal);
  try {
    const c = again.ref(Counter, "idem");
    await assert.rejects(c.ask("add", 2, { idempotencyKey: "k" }), { code: "conflict" });
    assert.equal(await c.ask("add", 1, { idempotencyKey: "k" }), 1);
    assert.equal(await c.ask("get"), 1);
  } finally {
    await again.close();
    await journal.close();
  }
});

Deno.test("the key of a protected call replayed on a public handler gets conflict or its own result, never the stored reply", async () => {
  // What the gateway attack did: a key stored by one caller's call to a protected handler,
  // sent again on a public handler of the same actor (the key scoped to that same caller,
  // as a key collision would give). Here at the activation: the key is bound to the call.
  const Vault = defineActor({
    name: "vault",
    initialState: () => ({ pin: "" }),
    events: { set: (_s, e: { pin: string }) => ({ pin: e.pin }) },
    handlers: {
      setPin(ctx, pin: string) {
        ctx.emit("set", { pin });
        return { owner: ctx.id, pin };
      },
      hello: () => "hello",
    },
  });
  const s = await createSystem({ actors: [Vault], logger: "silent" });
  try {
    const v = s.ref(Vault, "alice");
    const key = "caller:5:alice:k1";
    assert.deepEqual(await v.ask("setPin", "4711", { idempotencyKey: key }), {
      owner: "alice",
      pin: "4711",
    });
    const replay = await v.ask("hello", undefined, { idempotencyKey: key }).then(
      (value) => ({ value }),
      (err: ActorError) => ({ code: err.code }),
    );
    assert.notDeepEqual(replay, { value: { owner: "alice", pin: "4711" } });
    assert.deepEqual(replay, { code: "conflict" });
  } finally {
    await s.close();
  }
});

Deno.test("a turn without effects stores nothing for its key", async () => {
  const journal = memoryJournal();
  const s = await system(journal);
  try {
    const c = s.ref(Counter, "quiet");
    await c.ask("add", 3);
    for (let i = 0; i < 300; i++) {
      assert.deepEqual(await c.ask("peek", undefined, { idempotencyKey: `k${i}` }), { total: 3 });
    }
    // Keys reach the journal scoped by caller: `a:<key>` for an anonymous caller.
    for (const i of [0, 150, 299]) {
      assert.equal(await journal.reply("counter/quiet", `a:k${i}`), undefined, `k${i} stored`);
    }
    // A turn with effects stores its key.
    await c.ask("add", 1, { idempotencyKey: "effect" });
    assert.ok(await journal.reply("counter/quiet", "a:effect"));
  } finally {
    await s.close();
  }
});

Deno.test("a retry arriving while the first call's commit is in flight gets its reply and applies nothing twice", async () => {
  const h = holdable();
  const s = await system(h.journal);
  try {
    const c = s.ref(Counter, "retry");
    await c.ask("add", 0);
    h.hold();
    const first = c.ask("add", 5, { idempotencyKey: "r" });
    const second = c.ask("add", 5, { idempotencyKey: "r" });
    const other = c.ask("add", 6, { idempotencyKey: "r" });
    await assert.rejects(other, { code: "conflict" });
    await waitFor(() => h.held === 1, 3000, "the first call's append held");
    h.release();
    assert.deepEqual(await Promise.all([first, second]), [5, 5]);
    assert.equal((await h.base.read("counter/retry", 1, 10)).length, 2, "applied once");
  } finally {
    h.release();
    await s.close();
  }
});
