/** What a handler observes through `ctx`: its deadline signal, and publishes held until commit. */
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
import { advanceUntil, waitFor, within } from "./helpers.ts";
import { virtualClock } from "../adapters/testing/mod.ts";

Deno.test("ctx.signal aborts with a timeout reason when the caller's deadline passes", async () => {
  let seen: { before: boolean; reason: unknown; ms: number } | undefined;
  const clock = virtualClock();
  const Waiter = defineActor({
    name: "waiter",
    handlers: {
      async wait(ctx) {
        const t0 = clock.monotonic();
        const before = ctx.signal.aborted;
        // What a handler does with its signal: hand it to whatever it awaits.
        const reason = await new Promise((resolve) => {
          ctx.signal.addEventListener("abort", () => resolve(ctx.signal.reason), { once: true });
        });
        seen = { before, reason, ms: clock.monotonic() - t0 };
        // As `await delay(ms, ctx.signal)` would: fail with the reason rather than reply just
        // before the caller's own timer fires.
        if (reason instanceof Error) throw reason;
      },
      aborted: (ctx) => ctx.signal.aborted,
    },
  });
  const system = await createSystem({ actors: [Waiter], clock });
  try {
    const w = system.ref(Waiter, "w");
    const asked = assert.rejects(w.ask("wait", undefined, { timeout: 150 }), { code: "timeout" });
    await advanceUntil(clock, () => seen !== undefined, 10_000, "the handler to see the abort");
    await asked;
    const s = seen!;
    assert.equal(s.before, false, "not aborted while the deadline is ahead");
    assert.ok(s.reason instanceof TimeoutError, `aborted with ${s.reason}`);
    assert.equal(s.reason.code, "timeout");
    assert.equal(s.ms, 150, "aborted at the deadline");
    assert.equal(await w.ask("aborted"), false, "a turn within its deadline is not aborted");
  } finally {
    await system.close();
  }
});

Deno.test("ctx.signal of a nested call aborts at the outermost caller's deadline", async () => {
  let seen: { reason: unknown; ms: number } | undefined;
  const clock = virtualClock();
  const Inner = defineActor({
    name: "inner",
    handlers: {
      async wait(ctx) {
        const t0 = clock.monotonic();
        const reason = await new Promise((resolve) => {
          ctx.signal.addEventListener("abort", () => resolve(ctx.signal.reason), { once: true });
        });
        seen = { reason, ms: clock.monotonic() - t0 };
        if (reason instanceof Error) throw reason;
      },
    },
  });
  const Outer = defineActor({
    name: "outer",
    handlers: {
      async call(ctx) {
        await ctx.ref(Inner, "i").ask("wait", undefined, { timeout: 10_000 });
      },
    },
  });
  const system = await createSystem({ actors: [Outer, Inner], clock });
  try {
    const asked = assert.rejects(
      system.ref(Outer, "o").ask("call", undefined, { timeout: 150 }),
      { code: "timeout" },
    );
    await advanceUntil(clock, () => seen !== undefined, 20_000, "the inner handler's abort");
    await asked;
    const s = seen!;
    assert.ok(s.reason instanceof ActorError && s.reason.code === "timeout", String(s.reason));
    assert.equal(s.ms, 150, "aborted at the outer deadline, not its own 10 s");
  } finally {
    await system.close();
  }
});

/** A memory journal whose appends can be held back; `held` resolves when one is waiting. */
function holdableJournal() {
  const base = memoryJournal();
  let gate: Promise<void> | undefined;
  let waiting = Promise.withResolvers<void>();
  const journal: Journal = wrapJournal(base, {
    async append(a) {
      if (gate) {
        waiting.resolve();
        await gate;
      }
      return base.append(a);
    },
  });
  return {
    journal,
    /** Holds appends from now on; call the result to let them through. */
    hold(): { held: Promise<void>; release: () => void } {
      waiting = Promise.withResolvers<void>();
      const open = Promise.withResolvers<void>();
      gate = open.promise;
      return {
        held: waiting.promise,
        release: () => {
          gate = undefined;
          open.resolve();
        },
      };
    },
  };
}

/** A shop that emits, publishes, then waits for the test's `gate`; or publishes and fails. */
function shop() {
  const turn = {
    reached: Promise.withResolvers<void>(),
    gate: Promise.withResolvers<void>(),
  };
  const Shop = defineActor({
    name: "shop",
    initialState: () => ({ sold: 0 }),
    events: { sold: (s, _e: { item: string }) => ({ sold: s.sold + 1 }) },
    handlers: {
      async sell(ctx, item: string) {
        ctx.emit("sold", { item });
        ctx.publish("shop.sold", item);
        turn.reached.resolve();
        await turn.gate.promise;
        return ctx.state.sold;
      },
      refuse(ctx, item: string) {
        ctx.emit("sold", { item });
        ctx.publish("shop.sold", item);
        throw new ActorError("refused", { code: "refused" });
      },
      async refuseLater(ctx, item: string) {
        ctx.emit("sold", { item });
        ctx.publish("shop.sold", item);
        await new Promise((r) => setTimeout(r, 1));
        throw new ActorError("refused later", { code: "refused" });
      },
    },
  });
  return { Shop, turn };
}

/**
 * Publishes `marker` from outside and waits until the subscriber saw it: whatever the
 * handler had published before would have arrived first (one mesh, one publisher order).
 */
async function flush(system: System, seen: string[], marker: string): Promise<void> {
  await system.publish("shop.sold", marker);
  await waitFor(() => seen.includes(marker), 2_000, `the marker "${marker}"`);
}

Deno.test("ctx.publish is held until the handler's events are durable", async () => {
  const { Shop, turn } = shop();
  const j = holdableJournal();
  const system = await createSystem({ actors: [Shop], journal: j.journal });
  const seen: string[] = [];
  const sub = system.subscribe("shop.sold", (item) => void seen.push(item as string));
  let release = () => {};
  try {
    const s = system.ref(Shop, "s");
    const sold = s.ask("sell", "hat");
    await within(turn.reached.promise, 2_000, "the handler to publish");
    await flush(system, seen, "m1");
    assert.deepEqual(seen, ["m1"], "nothing while the handler is still running");

    const hold = j.hold();
    release = hold.release;
    turn.gate.resolve();
    await within(hold.held, 2_000, "the handler's events to reach the journal");
    await flush(system, seen, "m2");
    assert.deepEqual(seen, ["m1", "m2"], "nothing while its events are not durable");
    const logged = [];
    for await (const e of system.history(Shop, "s")) logged.push(e);
    assert.equal(logged.length, 0);

    release();
    assert.equal(await sold, 1);
    await waitFor(() => seen.includes("hat"), 2_000, "the handler's publish");
    assert.deepEqual(seen, ["m1", "m2", "hat"]);
  } finally {
    release();
    turn.gate.resolve();
    sub.unsubscribe();
    await system.close();
    await j.journal.close();
  }
});

Deno.test("ctx.publish is dropped when the handler throws", async () => {
  const { Shop, turn } = shop();
  const system = await createSystem({ actors: [Shop] });
  const seen: string[] = [];
  const sub = system.subscribe("shop.sold", (item) => void seen.push(item as string));
  try {
    const s = system.ref(Shop, "s");
    await assert.rejects(s.ask("refuse", "sock"), { code: "refused", message: "refused" });
    await assert.rejects(s.ask("refuseLater", "shoe"), { code: "refused" });
    await flush(system, seen, "m1");
    assert.deepEqual(seen, ["m1"], "a rolled-back turn publishes nothing");
    // Nor does it leak into the next turn that commits.
    turn.gate.resolve();
    assert.equal(await s.ask("sell", "hat"), 1);
    await waitFor(() => seen.includes("hat"), 2_000, "the committed turn's publish");
    await flush(system, seen, "m2");
    assert.deepEqual(seen, ["m1", "hat", "m2"]);
  } finally {
    turn.gate.resolve();
    sub.unsubscribe();
    await system.close();
  }
});
