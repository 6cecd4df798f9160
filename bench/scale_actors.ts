/** The actor type of `bench/scale.ts`: a small state, no events; `where` answers its node's id. */
import { defineActor } from "../mod.ts";

/** An idle-by-design actor (like `bench/memory.ts`'s): `{ v: 0 }` of state. */
export const Scale = defineActor({
  name: "scale",
  initialState: () => ({ v: 0 }),
  events: { set: (_s, v: number) => ({ v }) },
  handlers: { where: (ctx): string => ctx.node },
  idleAfter: 3_600_000,
});
