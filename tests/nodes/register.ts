/**
 * An event-sourced register for the chaos tests (tests/chaos/): read, write and
 * compare-and-set, each answering `{ ok, value }` (read: the current value; write and a
 * successful cas: the new value; a failed cas: the current value). The value starts at 0.
 */
import { defineActor } from "../../mod.ts";

/** The answer of every register handler. */
export interface RegisterReply {
  ok: boolean;
  value: number;
}

export const Register = defineActor({
  name: "register",
  initialState: () => ({ value: 0 }),
  events: {
    written: (_s, e: { value: number }) => ({ value: e.value }),
  },
  handlers: {
    read: (ctx): RegisterReply => ({ ok: true, value: ctx.state.value }),
    write(ctx, value: number): RegisterReply {
      ctx.emit("written", { value });
      return { ok: true, value };
    },
    cas(ctx, p: { expected: number; next: number }): RegisterReply {
      if (ctx.state.value !== p.expected) return { ok: false, value: ctx.state.value };
      ctx.emit("written", { value: p.next });
      return { ok: true, value: p.next };
    },
  },
  snapshotEvery: 20,
});
