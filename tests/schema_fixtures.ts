/** Actor types with payload schemas (Zod and Valibot), shared by the schema tests. */
import { z } from "zod";
import * as v from "valibot";
import { defineActor, streamOf } from "../mod.ts";
import type { StandardSchemaV1 } from "../spi.ts";

/** A ledger: every handler but `balance` declares a payload schema. */
export const Ledger = defineActor({
  name: "ledger",
  initialState: () => ({ balance: 0, owner: "" }),
  events: {
    deposited: (s, e: { amount: number }) => ({ ...s, balance: s.balance + e.amount }),
    opened: (s, e: { owner: string }) => ({ ...s, owner: e.owner }),
  },
  handlers: {
    // Zod
    deposit: {
      input: z.number().positive(),
      output: z.number(),
      handle(ctx, amount) {
        ctx.emit("deposited", { amount });
        return ctx.state.balance;
      },
    },
    // Valibot, nested
    open: {
      input: v.object({
        owner: v.pipe(v.string(), v.minLength(1)),
        limits: v.object({ daily: v.number() }),
      }),
      handle(ctx, p) {
        ctx.emit("opened", { owner: p.owner });
        return `${p.owner}:${p.limits.daily}`;
      },
    },
    // an input stream: each item is checked as it is read
    depositAll: {
      input: streamOf(z.number().int()),
      async handle(ctx, amounts) {
        for await (const amount of amounts) ctx.emit("deposited", { amount });
        return ctx.state.balance;
      },
    },
    // a reply that breaks its own output schema: the handler's bug
    broken: {
      input: z.number(),
      output: z.string(),
      handle(ctx, amount) {
        ctx.emit("deposited", { amount });
        return amount;
      },
    },
    // a streaming handler whose items are checked against `output`
    countdown: {
      input: z.number().int().min(0).max(10),
      output: z.number().int().min(1),
      async *handle(_ctx, from) {
        for (let i = from; i >= 0; i--) yield i;
      },
    },
    // duplex: each input item is checked as the handler reads it
    shout: {
      input: streamOf(z.string().max(5)),
      async *handle(_ctx, lines) {
        for await (const line of lines) yield line.toUpperCase();
      },
    },
    balance: (ctx) => ctx.state.balance,
  },
});

/** What the tests assert about a refusal: its code and the issues' paths. */
export function issuesOf(err: unknown): { code: string; paths: unknown[] } {
  const e = err as { code?: string; data?: { issues?: { path: unknown; message: unknown }[] } };
  for (const issue of e.data?.issues ?? []) {
    if (typeof issue.message !== "string" || issue.message === "") {
      throw new Error(`An issue without a message: ${JSON.stringify(issue)}`);
    }
  }
  return { code: String(e.code), paths: (e.data?.issues ?? []).map((i) => i.path) };
}

/**
 * A hand-written asynchronous schema: `validate` records each value it sees in `seen` and
 * waits until `release(value)` before it accepts (any number) or refuses (anything else).
 */
export function heldSchema(): StandardSchemaV1<number> & {
  seen: unknown[];
  release(value: unknown): void;
} {
  const seen: unknown[] = [];
  const waiting = new Map<unknown, () => void>();
  const released = new Set<unknown>();
  return {
    seen,
    release(value) {
      released.add(value);
      waiting.get(value)?.();
    },
    "~standard": {
      version: 1,
      vendor: "test",
      validate(value) {
        seen.push(value);
        const verdict = () =>
          typeof value === "number" ? { value } : { issues: [{ message: "Expected a number" }] };
        if (released.has(value)) return verdict();
        return new Promise((resolve) => waiting.set(value, () => resolve(verdict())));
      },
    },
  };
}

/** A hand-written synchronous schema that records what it saw. */
export function seenSchema(): StandardSchemaV1<number> & { seen: unknown[] } {
  const seen: unknown[] = [];
  return {
    seen,
    "~standard": {
      version: 1,
      vendor: "test",
      validate(value) {
        seen.push(value);
        return typeof value === "number"
          ? { value }
          : { issues: [{ message: "Expected a number" }] };
      },
    },
  };
}
