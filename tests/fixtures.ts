/** Actor types shared by the tests. */
import { ActorError, defineActor } from "../mod.ts";

export const Account = defineActor({
  name: "account",
  initialState: () => ({ balance: 0 }),
  events: {
    deposited: (s, e: { amount: number }) => ({ balance: s.balance + e.amount }),
    withdrawn: (s, e: { amount: number }) => ({ balance: s.balance - e.amount }),
  },
  handlers: {
    deposit(ctx, amount: number) {
      ctx.emit("deposited", { amount });
      return ctx.state.balance;
    },
    withdraw(ctx, amount: number) {
      if (amount > ctx.state.balance) {
        throw new ActorError("insufficient funds", { code: "insufficient" });
      }
      ctx.emit("withdrawn", { amount });
      return ctx.state.balance;
    },
    balance: (ctx) => ctx.state.balance,
    seq: (ctx) => ctx.seq,
    depositThenFail(ctx, amount: number) {
      ctx.emit("deposited", { amount });
      throw new Error("boom");
    },
    async *statement(ctx, n: number | undefined) {
      for (let i = 0; i < (n ?? 3); i++) yield { line: i, balance: ctx.state.balance };
    },
  },
  snapshotEvery: 10,
});

export const Counter = defineActor({
  name: "counter",
  initialState: () => ({ n: 0 }),
  handlers: {
    inc(ctx, by: number | undefined) {
      ctx.state = { n: ctx.state.n + (by ?? 1) };
      return ctx.state.n;
    },
    get: (ctx) => ctx.state.n,
    async slow(ctx, ms: number) {
      await new Promise((r) => setTimeout(r, ms));
      return ctx.state.n;
    },
    throwString() {
      throw "not an error";
    },
    throwUndefined() {
      throw undefined;
    },
    echo: (_ctx, v: unknown) => v,
    deadline: (ctx) => ctx.signal.aborted,
  },
});

/** Concurrency seen by `Resize.thumbnail`. */
export const resizeLoad = { now: 0, max: 0 };

export const Resize = defineActor({
  name: "resize",
  stateless: true,
  concurrency: 4,
  handlers: {
    async thumbnail(_ctx, size: number) {
      resizeLoad.max = Math.max(resizeLoad.max, ++resizeLoad.now);
      await new Promise((r) => setTimeout(r, 20));
      resizeLoad.now--;
      return `thumb-${size}`;
    },
    where: (_ctx) => "here",
  },
});
