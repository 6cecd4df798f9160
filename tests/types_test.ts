/**
 * Type tests: `deno check` (and `deno test`, which type-checks first) fails when a
 * `@ts-expect-error` line stops being an error or a typed line stops compiling. The test body
 * also runs, so the same calls are checked at run time.
 */
import assert from "node:assert/strict";
import { z } from "zod";
import * as v from "valibot";
import { type ActorRef, createSystem, defineActor, type StateOf, streamOf } from "../mod.ts";

const Account = defineActor({
  name: "account",
  initialState: () => ({ balance: 0 }),
  events: {
    deposited: (s, e: { amount: number }) => ({ balance: s.balance + e.amount }),
  },
  handlers: {
    deposit(ctx, amount: number) {
      ctx.emit("deposited", { amount });
      // @ts-expect-error unknown event type
      if (amount < 0) ctx.emit("stolen", { amount });
      // @ts-expect-error wrong event payload
      if (amount < 0) ctx.emit("deposited", { amount: "5" });
      return ctx.state.balance;
    },
    async label(ctx, p: { prefix: string }) {
      await Promise.resolve();
      return `${p.prefix}${ctx.id}`;
    },
    balance: (ctx) => ctx.state.balance,
    async *statement(ctx) {
      yield* [ctx.state.balance];
    },
  },
});

const Counter = defineActor({
  name: "counter",
  initialState: () => 0,
  handlers: { inc: (ctx, n: number) => (ctx.state += n) },
});

const Resize = defineActor({
  name: "resize",
  stateless: true,
  handlers: { thumb: (_ctx, size: number) => ({ size }) },
});

type AccountState = StateOf<typeof Account>;
const _state: AccountState = { balance: 1 };

async function typed(a: ActorRef<NonNullable<typeof Account["__types"]>>) {
  const n: number = await a.ask("deposit", 5);
  const s: string = await a.ask("label", { prefix: "x" });
  const b: number = await a.ask("balance");
  const items: number[] = [];
  for await (const x of a.stream("statement")) items.push(x);
  return { n, s, b, items };
}

// Type-checked, never run: each line must be a compile error.
export async function _compileErrors(a: ActorRef<NonNullable<typeof Account["__types"]>>) {
  // @ts-expect-error wrong payload type
  await a.ask("deposit", "5").catch(() => {});
  // @ts-expect-error missing payload
  await a.ask("deposit").catch(() => {});
  // @ts-expect-error unknown handler
  await a.ask("nope", 5).catch(() => {});
  // @ts-expect-error a streaming handler is not asked
  await a.ask("statement").catch(() => {});
  // @ts-expect-error a plain handler is not streamed
  a.stream("deposit", 5);
  // @ts-expect-error the reply type is the handler's return type
  const wrong: string = await a.ask("deposit", 5);
  // @ts-expect-error tell checks payloads too
  await a.tell("deposit", { amount: 5 }).catch(() => {});
  return wrong;
}

Deno.test("typed refs: inferred payloads and replies work at run time", async () => {
  const system = await createSystem({ actors: [Account, Counter, Resize] });
  try {
    const r = await typed(system.ref(Account, "t"));
    assert.equal(r.n, 5);
    assert.equal(r.s, "xt");
    assert.equal(r.b, 5);
    assert.deepEqual(r.items, [5]);
    const c: number = await system.ref(Counter, "c").ask("inc", 2);
    assert.equal(c, 2);
    const t: { size: number } = await system.ref(Resize).ask("thumb", 64);
    assert.deepEqual(t, { size: 64 });
  } finally {
    await system.close();
  }
});

const Chat = defineActor({
  name: "chat",
  initialState: () => 0,
  handlers: {
    async *shout(_ctx, input: AsyncIterable<string>) {
      for await (const m of input) yield m.length;
    },
    async total(_ctx, input: AsyncIterable<number>) {
      let n = 0;
      for await (const v of input) n += v;
      return n;
    },
  },
});

Deno.test("types: input streams take any iterable of the item type, results are inferred", async () => {
  const system = await createSystem({ actors: [Chat] });
  try {
    const chat = system.ref(Chat, "c");
    const lengths: number[] = [];
    for await (const n of chat.stream("shout", ["ab", "c"].values())) lengths.push(n);
    assert.deepEqual(lengths, [2, 1]);
    const sum: number = await chat.ask("total", [1, 2, 3].values());
    assert.equal(sum, 6);
    const nums = async function* () {
      yield 4;
    };
    assert.equal(await chat.ask("total", nums()), 4);
    // @ts-expect-error items of the wrong type
    await chat.ask("total", ["x"].values()).catch(() => {});
    // @ts-expect-error a stream handler's result is a stream, not a reply
    const _wrong: number = await chat.stream("shout", ["a"].values());
  } finally {
    await system.close();
  }
});

// ---- payload schemas: the payload type comes from the schema ----

const Shop = defineActor({
  name: "shop",
  initialState: () => ({ items: [] as string[] }),
  events: { added: (s, e: { item: string }) => ({ items: [...s.items, e.item] }) },
  handlers: {
    add: {
      input: z.object({ item: z.string(), qty: z.number().int() }),
      handle(ctx, p) {
        const qty: number = p.qty;
        ctx.emit("added", { item: p.item });
        // @ts-expect-error the payload type is the schema's
        const wrong: string = p.qty;
        return { count: ctx.state.items.length, qty, wrong };
      },
    },
    rename: {
      input: v.string(),
      output: v.string(),
      handle: (_ctx, name) => name.toUpperCase(),
    },
    feed: {
      input: streamOf(z.number()),
      async *handle(_ctx, numbers) {
        for await (const n of numbers) yield n.toFixed(1);
      },
    },
    count: (ctx) => ctx.state.items.length,
  },
});

Deno.test("types: schema handlers infer payloads from the schema and keep plain handlers typed", async () => {
  const system = await createSystem({ actors: [Shop] });
  try {
    const shop = system.ref(Shop, "s");
    const r: { count: number; qty: number } = await shop.ask("add", { item: "tea", qty: 2 });
    assert.equal(r.count, 1);
    const name: string = await shop.ask("rename", "ann");
    assert.equal(name, "ANN");
    const out: string[] = [];
    for await (const s of shop.stream("feed", [1, 2].values())) out.push(s);
    assert.deepEqual(out, ["1.0", "2.0"]);
    const n: number = await shop.ask("count");
    assert.equal(n, 1);
    // @ts-expect-error a field of the wrong type
    await shop.ask("add", { item: "tea", qty: "2" }).catch(() => {});
    // @ts-expect-error a missing field
    await shop.ask("add", { item: "tea" }).catch(() => {});
    // @ts-expect-error the payload of a Valibot schema
    await shop.ask("rename", 5).catch(() => {});
    // @ts-expect-error the reply type is handle's return type
    const _wrong: number = await shop.ask("rename", "x");
    // @ts-expect-error items of an input stream are checked against the item schema
    shop.stream("feed", ["a"].values());
    // @ts-expect-error a schema handler that streams is not asked
    await shop.ask("feed", [1].values()).catch(() => {});
  } finally {
    await system.close();
  }
});

// Type-checked, never run: definitions that must not compile.
export function _badSchemaHandlers() {
  defineActor({
    name: "bad1",
    handlers: {
      // @ts-expect-error handle's payload annotation contradicts the schema
      add: { input: z.number(), handle: (_ctx: unknown, p: string) => p },
    },
  });
  defineActor({
    name: "bad2",
    handlers: {
      // @ts-expect-error input must be a Standard Schema
      add: { input: { parse: (x: unknown) => x }, handle: () => 1 },
    },
  });
  defineActor({
    name: "bad3",
    initialState: () => 0,
    events: { bumped: (s, _e: { by: number }) => s + 1 },
    handlers: {
      add: {
        input: z.number(),
        handle(ctx, by) {
          // @ts-expect-error ctx is typed inside handle: unknown event
          ctx.emit("nope", { by });
          return ctx.state;
        },
      },
    },
  });
}
