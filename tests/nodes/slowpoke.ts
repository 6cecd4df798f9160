/** A stateless worker for failover tests: takes a while, says where it runs. */
import { defineActor } from "../../mod.ts";

export const Slowpoke = defineActor({
  name: "slowpoke",
  stateless: true,
  handlers: {
    async work(ctx, ms: number) {
      console.log(`WORK ${JSON.stringify({ node: ctx.node })}`);
      await new Promise((r) => setTimeout(r, ms));
      return ctx.node;
    },
  },
});
