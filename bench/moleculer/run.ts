/**
 * Runs the Moleculer comparison (`bench/moleculer/bench.cjs`) with Node.js: installs
 * `moleculer@0.14` and `nats@2` into a scratch folder outside the repository (npm, at bench
 * time; or reuses `$MOLECULER_MODULES`, a `node_modules` folder holding both), then runs the
 * caller, which starts its responder process. Nothing is installed into the project.
 *
 * @module
 */

/** What {@link benchMoleculer} measured, or why it could not run. */
export type MoleculerResult =
  | { readonly figures: Record<string, number>; readonly version: string }
  | { readonly skipped: string };

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  return { ok: out.success, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

let installed: string | undefined;

/** A `node_modules` folder with moleculer@0.14 and nats@2, installed once per process. */
async function modules(): Promise<string> {
  const given = Deno.env.get("MOLECULER_MODULES");
  if (given) return given;
  if (installed) return installed;
  const dir = await Deno.makeTempDir({ prefix: "troupe-moleculer-" });
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* gone */ }
  });
  const r = await run("npm", [
    "install",
    "--prefix",
    dir,
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    "moleculer@0.14",
    "nats@2",
  ]);
  if (!r.ok) throw new Error(`npm install failed: ${r.stderr.trim().slice(-500)}`);
  return installed = `${dir}/node_modules`;
}

/**
 * Moleculer vs raw NATS from Node.js against the nats-server at `natsUrl` (both payloads of
 * `bench/nats.ts`); `seconds` per round, three rounds.
 */
export async function benchMoleculer(
  options: { natsUrl: string; serverPid?: number; seconds?: number },
): Promise<MoleculerResult> {
  try {
    const node = await run("node", ["--version"]).catch(() => undefined);
    if (!node?.ok) return { skipped: "no `node` on PATH" };
    const dir = await modules();
    const r = await run("node", [new URL("./bench.cjs", import.meta.url).pathname], {
      MOLECULER_MODULES: dir,
      NATS_URL: options.natsUrl,
      BENCH_SECONDS: String(options.seconds ?? 1.5),
      ...(options.serverPid ? { NATS_SERVER_PID: String(options.serverPid) } : {}),
    });
    const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
    if (!r.ok || !line) {
      return { skipped: `the Node.js run failed: ${r.stderr.trim().slice(-500)}` };
    }
    const all = JSON.parse(line.slice(7)) as Record<string, unknown>;
    const figures: Record<string, number> = {};
    for (const [k, v] of Object.entries(all)) if (typeof v === "number") figures[k] = v;
    return { figures, version: String(all.moleculer) };
  } catch (err) {
    return { skipped: err instanceof Error ? err.message : String(err) };
  }
}

if (import.meta.main) {
  const url = Deno.args[0];
  if (!url) throw new Error("usage: deno run -A bench/moleculer/run.ts nats://127.0.0.1:4222");
  console.log(JSON.stringify(await benchMoleculer({ natsUrl: url }), null, 2));
}
