/**
 * A node that writes until it is killed: `actors` actors asking in a loop and one hot actor
 * with 32 concurrent callers, each ask emitting two events carrying its value. Prints
 * `ACK <actor> <value>` once an ask was answered (its events are durable by then), in
 * batches, after `READY`.
 *
 * Usage: deno run -A tests/nodes/crash_writer.ts <journal url> <actors>
 */
import { createSystem, defineActor } from "../../mod.ts";
import { libsqlJournal } from "../../adapters/libsql/mod.ts";

export const Pair = defineActor({
  name: "pair",
  initialState: () => ({ count: 0 }),
  events: { half: (s, _e: { value: number; part: 1 | 2 }) => ({ count: s.count + 1 }) },
  handlers: {
    put(ctx, value: number) {
      ctx.emit("half", { value, part: 1 });
      ctx.emit("half", { value, part: 2 });
      return ctx.state.count;
    },
  },
  snapshotEvery: 50,
});

if (import.meta.main) {
  const [url, count] = Deno.args;
  const journal = libsqlJournal({ url: url! });
  const system = await createSystem({ actors: [Pair], journal, logger: "silent" });
  const enc = new TextEncoder();
  let lines: string[] = [];
  const flush = () => {
    if (lines.length === 0) return;
    const out = enc.encode(lines.join(""));
    lines = [];
    let written = 0;
    while (written < out.length) written += Deno.stdout.writeSync(out.subarray(written));
  };
  setInterval(flush, 5);
  let next = 0;
  const writer = async (id: string) => {
    const ref = system.ref(Pair, id);
    for (;;) {
      const value = ++next;
      await ref.ask("put", value);
      lines.push(`ACK ${id} ${value}\n`);
    }
  };
  console.log("READY");
  for (let i = 0; i < Number(count); i++) void writer(`a${i}`);
  for (let i = 0; i < 32; i++) void writer("hot");
}
