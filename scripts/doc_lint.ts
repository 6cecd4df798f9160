/**
 * `deno doc --lint` on every entry point of the package (deno.json `exports`). The two core
 * entries, `.` (mod.ts: what users write) and `./spi` (spi.ts: what adapter authors write),
 * share their types: `SystemOptions` in mod.ts takes a `Journal` of spi.ts, a conformance suite
 * of spi.ts throws mod.ts's errors. So each entry is linted together with those two, and a type
 * any entry refers to must be exported by that entry or by one of the two (the package
 * documents it once, wherever users find it), instead of every entry re-exporting the whole API.
 *
 * One diagnostic is not ours and is let through, by name: `… references private type 'Hono'`,
 * the app class of the npm package hono that `gateway()` returns. Deno 2.9 flags types of other
 * packages as private (denoland/deno#27364, fixed upstream by denoland/deno#34339); re-exporting
 * the class would make its whole declaration tree ours to document.
 *
 * Usage: `deno run -A scripts/doc_lint.ts`. Exit code 1 on any other diagnostic.
 *
 * @module
 */

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const UPSTREAM = [/references private type 'Hono'$/];
/** The entries every entry is linted with. */
const CORE = ["./mod.ts", "./spi.ts"];

/** The diagnostics of one `deno doc --lint` output, as their first lines. */
export function diagnostics(output: string): string[] {
  return output.split("\n").filter((l) => /^error\[[a-z-]+\]:/.test(l));
}

if (import.meta.main) {
  const config = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
  const entries = Object.values(config.exports as Record<string, string>);
  let failed = 0;
  for (const entry of entries) {
    const files = [entry, ...CORE.filter((c) => c !== entry)];
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["doc", "--lint", ...files],
      cwd: REPO,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const found = diagnostics(text);
    const ours = found.filter((d) => !UPSTREAM.some((re) => re.test(d)));
    if (ours.length > 0 || (!out.success && found.length === 0)) {
      failed++;
      console.log(`!! ${entry}\n${text}`);
    } else {
      const note = found.length > ours.length ? ` (${found.length} upstream, let through)` : "";
      console.log(`ok ${entry}${note}`);
    }
  }
  Deno.exit(failed === 0 ? 0 : 1);
}
