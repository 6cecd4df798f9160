import { createSystem, defineActor } from "./mod.ts";
import { libsqlJournal } from "./adapters/libsql/mod.ts";
const Ledger = defineActor({
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
});
const dir = await Deno.makeTempDir();
const journal = libsqlJournal({ url: `file:${dir}/x.db` });
const s = await createSystem({ actors: [Ledger], journal, logger: "warn" });
const refs = Array.from({ length: 1000 }, (_, i) => s.ref(Ledger, `l${i}`));
await Promise.all(refs.map(async (r) => {
  for (let k = 0; k < 5; k++) await r.ask("add", 1);
}));
const t0 = performance.now();
await Promise.all(refs.map(async (r) => {
  for (let k = 0; k < 100; k++) await r.ask("add", 1);
}));
console.log(Math.round(100000 / ((performance.now() - t0) / 1000)), "/s");
await s.close();
await journal.close();
await Deno.remove(dir, { recursive: true });
