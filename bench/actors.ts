/** Actor types used by the benchmarks. */
import { defineActor } from "../mod.ts";

/** Replies with its payload; no events. */
export const BenchEcho = defineActor({
  name: "bench-echo",
  initialState: () => ({ n: 0 }),
  handlers: {
    ping(ctx, payload: Uint8Array) {
      ctx.state.n++;
      return payload;
    },
  },
  idleAfter: 600_000,
});

/** A stateless worker that replies with its payload. */
export const BenchWorker = defineActor({
  name: "bench-worker",
  stateless: true,
  handlers: { ping: (_ctx, payload: Uint8Array) => payload },
});

/**
 * An actor type whose every `add` emits one event (the durable path's benchmarks), with a
 * snapshot every `snapshotEvery` events.
 *
 * @example
 * ```ts
 * import { ledger } from "./actors.ts";
 * const Ledger150 = ledger(150); // snapshot at 150: an activation replays what follows it
 * ```
 */
export function ledger(snapshotEvery = 100) {
  return defineActor({
    name: "ledger",
    initialState: () => ({ total: 0 }),
    events: { added: (s, e: number) => ({ total: s.total + e }) },
    handlers: {
      add(ctx, n: number) {
        ctx.emit("added", n);
        return ctx.state.total;
      },
      total: (ctx) => ctx.state.total,
    },
    snapshotEvery,
    idleAfter: 600_000,
  });
}

/** {@link ledger} with a snapshot every 100 events. */
export const Ledger = ledger();
