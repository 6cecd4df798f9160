/**
 * The actor of the outbox crash test (tests/outbox_crash_test.ts), shared by its node process
 * (outbox_node.ts) and the test: each turn emits one event and publishes one durable message
 * (`ctx.publish(…, { durable: true })`, stored with the turn's commit), both carrying the
 * caller's number `n`; `placeThenFail` publishes, then throws, so its turn does not commit.
 */
import { ActorError, defineActor } from "../../mod.ts";

/** The payload of an `orders.placed` message. */
export interface Placed {
  /** The actor's id. */
  id: string;
  /** The caller's number (unique per call in the test). */
  n: number;
  /** Set on the messages of `placeThenFail` (which must never be delivered). */
  failed?: true;
}

/** Orders: `place(n)` commits an event and a durable message; `placeThenFail(n)` does not. */
export const Orders = defineActor({
  name: "orders",
  initialState: () => ({ placed: 0 }),
  events: { placed: (s, _e: { n: number }) => ({ placed: s.placed + 1 }) },
  handlers: {
    place(ctx, n: number) {
      ctx.emit("placed", { n });
      ctx.publish("orders.placed", { id: ctx.id, n } satisfies Placed, { durable: true });
      return n;
    },
    placeThenFail(ctx, n: number): number {
      ctx.emit("placed", { n });
      ctx.publish("orders.placed", { id: ctx.id, n, failed: true } satisfies Placed, {
        durable: true,
      });
      throw new ActorError("payment refused", { code: "payment_refused" });
    },
  },
});
