/**
 * The bank example's actor types: event-sourced accounts, and transfers that move money
 * between accounts exactly once (idempotency keys make every step safe to retry).
 *
 * @module
 */
import { ActorError, defineActor } from "../../mod.ts";

/** A bank account. */
export const Account = defineActor({
  name: "account",
  initialState: () => ({ balance: 0 }),
  events: {
    deposited: (s, e: { amount: number; ref?: string }) => ({ balance: s.balance + e.amount }),
    withdrawn: (s, e: { amount: number; ref?: string }) => ({ balance: s.balance - e.amount }),
  },
  handlers: {
    deposit(ctx, p: { amount: number; ref?: string }) {
      if (!(p.amount > 0)) throw new ActorError("amount must be positive", { code: "invalid" });
      ctx.emit("deposited", p);
      return ctx.state.balance;
    },
    withdraw(ctx, p: { amount: number; ref?: string }) {
      if (!(p.amount > 0)) throw new ActorError("amount must be positive", { code: "invalid" });
      if (p.amount > ctx.state.balance) {
        throw new ActorError(`insufficient funds in ${ctx.id}`, { code: "insufficient" });
      }
      ctx.emit("withdrawn", p);
      return ctx.state.balance;
    },
    balance: (ctx) => ctx.state.balance,
  },
  snapshotEvery: 50,
});

/** The state of a transfer. */
export type TransferState =
  | { status: "new" }
  | {
    status: "debited" | "done" | "failed";
    from: string;
    to: string;
    amount: number;
    why?: string;
  };

/** A transfer between two accounts: debit, then credit, each step idempotent. */
export const Transfer = defineActor({
  name: "transfer",
  initialState: (): TransferState => ({ status: "new" }),
  events: {
    debited: (_s, e: { from: string; to: string; amount: number }): TransferState => ({
      status: "debited",
      ...e,
    }),
    completed: (s): TransferState => ({
      ...(s as Extract<TransferState, { from: string }>),
      status: "done",
    }),
    failed: (_s, e: { from: string; to: string; amount: number; why: string }): TransferState => ({
      status: "failed",
      ...e,
    }),
  },
  handlers: {
    async run(ctx, p: { from: string; to: string; amount: number }) {
      if (ctx.state.status === "done" || ctx.state.status === "failed") return ctx.state;
      if (ctx.state.status === "new") {
        try {
          await ctx.ref(Account, p.from).ask("withdraw", { amount: p.amount, ref: ctx.id }, {
            idempotencyKey: `${ctx.id}:debit`,
          });
        } catch (err) {
          if (err instanceof ActorError && err.code === "insufficient") {
            ctx.emit("failed", { ...p, why: err.message });
            return ctx.state;
          }
          throw err;
        }
        ctx.emit("debited", p);
      }
      await ctx.ref(Account, p.to).ask("deposit", { amount: p.amount, ref: ctx.id }, {
        idempotencyKey: `${ctx.id}:credit`,
      });
      ctx.emit("completed", undefined);
      return ctx.state;
    },
    status: (ctx) => ctx.state,
  },
});
