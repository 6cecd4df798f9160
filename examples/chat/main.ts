/**
 * A chat you can open: `deno task chat`, then http://127.0.0.1:8000/?room=lobby in two
 * browser tabs (or two browsers). Messages are kept in `data/chat.db` (libSQL).
 *
 * Environment: `PORT` (default 8000), `HOSTNAME` (default 127.0.0.1), `TROUPE_JOURNAL`
 * (default `file:data/chat.db`; `:memory:` keeps nothing).
 *
 * @module
 */
import { createSystem } from "../../mod.ts";
import { Room } from "./actors.ts";
import { chatApp } from "./app.ts";

const journal = Deno.env.get("TROUPE_JOURNAL") ?? "file:data/chat.db";
if (journal.startsWith("file:")) await Deno.mkdir("data", { recursive: true });
const system = await createSystem({ actors: [Room], journal });
const draining = new AbortController();
const server = Deno.serve({
  hostname: Deno.env.get("HOSTNAME") ?? "127.0.0.1",
  port: Number(Deno.env.get("PORT") ?? 8000),
  onListen: ({ hostname, port }) =>
    console.log(`chat: open http://${hostname}:${port}/?room=lobby`),
}, chatApp(system, draining.signal).fetch);

/** Stops on Ctrl-C or SIGTERM: feeds end, open requests get up to 5 s, then the node closes. */
async function stop() {
  const timer = setTimeout(() => Deno.exit(1), 5_000);
  draining.abort();
  await server.shutdown().catch(() => {});
  await system.close();
  clearTimeout(timer);
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
