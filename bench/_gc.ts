/**
 * Runs a script under V8's GC tracing (`--trace-gc-nvp`) and sums up, per isolate (the main
 * thread, each worker), its young collections after the first `SKIP_MS` (default 1500) ms:
 * how much of what was allocated survived one, how much was promoted to the old generation, and
 * the time spent in young and full collections. A high survival or promotion share for a
 * request/response workload says that objects live longer than they should: a common cause is
 * V8's allocation-site pretenuring of object or array literals (see `docs/architecture.md`,
 * "What a durable ask costs").
 *
 * `deno run -A bench/_gc.ts bench/_prof_durable.ts` (environment passed through; `GC_FLAGS` adds
 * V8 flags, e.g. `GC_FLAGS=--no-allocation-site-pretenuring` for the comparison).
 *
 * @module
 */

interface GcEvent {
  gc: string;
  pause: number;
  allocated: number;
  promoted: number;
  new_space_survived: number;
}

const [script, ...rest] = Deno.args;
if (!script) throw new Error("usage: _gc.ts <script> [args…]");
const skipMs = Number(Deno.env.get("SKIP_MS") ?? 1500);
const flags = ["--trace-gc-nvp", ...(Deno.env.get("GC_FLAGS") ?? "").split(",").filter(Boolean)];
const out = await new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", `--v8-flags=${flags.join(",")}`, script, ...rest],
  stdout: "piped",
  stderr: "inherit",
}).output();
const isolates = new Map<string, GcEvent[]>();
for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
  const m = /^\[\d+:(0x[0-9a-f]+):\d+\]\s+(\d+) ms: GC: (\{.*\})\s*$/.exec(line);
  if (!m) {
    if (line.trim() !== "" && !line.includes("GC:") && !line.includes('":')) console.log(line);
    continue;
  }
  if (Number(m[2]) < skipMs) continue;
  try {
    const e = JSON.parse(m[3]!) as GcEvent;
    const list = isolates.get(m[1]!) ?? [];
    list.push(e);
    isolates.set(m[1]!, list);
  } catch {
    // a line cut by another thread's output
  }
}
for (const [isolate, events] of isolates) {
  const young = events.filter((e) => e.gc === "s" || e.gc === "mmc");
  const full = events.filter((e) => e.gc === "mc");
  const allocated = young.reduce((n, e) => n + e.allocated, 0);
  if (allocated === 0) continue;
  const pct = (n: number) => `${(n / allocated * 100).toFixed(1)} %`;
  const ms = (list: GcEvent[]) => `${list.reduce((n, e) => n + e.pause, 0).toFixed(0)} ms`;
  console.log(
    `isolate ${isolate}: ${young.length} young collections (${ms(young)}), ${full.length} full (${
      ms(full)
    }); of ${(allocated / 1e6).toFixed(0)} MB allocated, survived ${
      pct(young.reduce((n, e) => n + e.new_space_survived, 0))
    }, promoted ${pct(young.reduce((n, e) => n + e.promoted, 0))}`,
  );
}
Deno.exit(out.code);
