/**
 * What the node processes of the multi-process tests share (bank_node.ts, chaos_node.ts): their
 * environment, a libSQL journal that can trace its appends, and a graceful close on SIGTERM.
 *
 * Environment: `TROUPE_SERVERS` (NATS URLs, comma-separated) and `TROUPE_JOURNAL` (libSQL URL)
 * are required; `TROUPE_NODE`, `TROUPE_PREFIX`, `TROUPE_LEASE_TTL`; `TROUPE_TRACE=1` prints
 * `APPEND {json}` (`node`, `actor`, `epoch`, `first`, `n`) after every successful append and
 * `APPEND_FAILED {json}` after a refused one.
 */
import { createSystem, type System, type SystemOptions } from "../../mod.ts";
import type { Journal } from "../../spi.ts";
import { wrapJournal } from "../_journal.ts";
import { natsMesh } from "../../adapters/nats/mod.ts";
import { libsqlJournal } from "../../adapters/libsql/mod.ts";

/** Reads the environment, exiting with 2 when a required variable is missing. */
export function nodeEnv(name: string) {
  const env = (key: string): string | undefined => Deno.env.get(key) || undefined;
  const servers = (env("TROUPE_SERVERS") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const journalUrl = env("TROUPE_JOURNAL");
  if (servers.length === 0 || !journalUrl) {
    console.error(`${name}: TROUPE_SERVERS and TROUPE_JOURNAL are required`);
    Deno.exit(2);
  }
  return {
    env,
    servers,
    journalUrl,
    node: env("TROUPE_NODE") ?? `${name}-${crypto.randomUUID().slice(0, 8)}`,
    prefix: env("TROUPE_PREFIX") ?? "troupe",
    leaseTtl: Number(env("TROUPE_LEASE_TTL") ?? 5000),
    trace: env("TROUPE_TRACE") === "1",
  };
}

/**
 * Starts the node: a libSQL journal (traced when asked), the NATS mesh, and a graceful close on
 * SIGTERM/SIGINT that prints `CLOSED` and exits; prints `READY {json}` once started.
 */
export async function startNode(
  name: string,
  actors: NonNullable<SystemOptions["actors"]>,
  options: { traceEmpty?: boolean } = {},
): Promise<{ system: System; env: ReturnType<typeof nodeEnv> }> {
  const e = nodeEnv(name);
  const base = libsqlJournal({ url: e.journalUrl });
  const journal: Journal = !e.trace ? base : wrapJournal(base, {
    async append(a) {
      const what = {
        node: e.node,
        actor: a.actor,
        epoch: a.epoch,
        first: a.expectedSeq + 1,
        n: a.events.length,
      };
      try {
        await base.append(a);
      } catch (err) {
        console.log(`APPEND_FAILED ${JSON.stringify({ ...what, error: String(err) })}`);
        throw err;
      }
      if (what.n > 0 || options.traceEmpty !== false) console.log(`APPEND ${JSON.stringify(what)}`);
    },
  });
  const system = await createSystem({
    actors,
    journal,
    mesh: natsMesh({ servers: e.servers, prefix: e.prefix, leaseTtl: e.leaseTtl }),
    node: e.node,
    logger: "warn",
  });
  let closing: Promise<void> | undefined;
  const shutdown = () =>
    closing ??= (async () => {
      let code = 0;
      try {
        await system.close();
        await base.close();
      } catch (err) {
        console.error(`${name}: close failed`, err);
        code = 1;
      }
      console.log("CLOSED");
      Deno.exit(code);
    })();
  Deno.addSignalListener("SIGTERM", shutdown);
  Deno.addSignalListener("SIGINT", shutdown);
  console.log(`READY ${JSON.stringify({ node: e.node, pid: Deno.pid })}`);
  return { system, env: e };
}
