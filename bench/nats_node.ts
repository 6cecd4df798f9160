/**
 * The remote side of the NATS benchmarks: a node hosting the bench actors, plus a raw NATS
 * responder on the same kind of connection for the baseline. Prints `READY` when both listen.
 *
 * @module
 */
import { createSystem } from "../mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { connect } from "@nats-io/transport-node";
import { type NatsConnection, wsconnect } from "@nats-io/nats-core";
import { BenchEcho, BenchWorker } from "./actors.ts";
import {
  startAllocProfile,
  startCpuProfile,
  stopAllocProfile,
  stopCpuProfile,
} from "./_alloc_prof.ts";

const servers = Deno.env.get("TROUPE_SERVERS")!.split(",");
const rawServers = Deno.env.get("TROUPE_RAW_SERVERS")?.split(",") ?? servers;
const prefix = Deno.env.get("TROUPE_PREFIX") ?? "troupe";
const node = Deno.env.get("TROUPE_NODE") ?? "bench-node";
// TROUPE_AUTH_SECRET: auth on, HS256 tokens with that secret (bench/auth.ts).
const secret = Deno.env.get("TROUPE_AUTH_SECRET");
// TROUPE_JOURNAL: a libSQL URL shared by the nodes (ownership lives in the journal: nodes with
// separate memory journals never see each other's claims).
const journalUrl = Deno.env.get("TROUPE_JOURNAL");
const journal = journalUrl ? libsqlJournal({ url: journalUrl }) : undefined;
const system = await createSystem({
  actors: [BenchEcho, BenchWorker],
  mesh: natsMesh({ servers, prefix, leaseTtl: Number(Deno.env.get("TROUPE_LEASE_TTL") ?? 5000) }),
  node,
  ...(journal ? { journal } : {}),
  ...(secret
    ? { auth: { secret, algorithms: ["HS256"], issuer: "bench", audience: "troupe" } }
    : {}),
});
const raws: NatsConnection[] = [];
for (const url of new Set([...servers, ...rawServers])) {
  const nc = url.startsWith("ws")
    ? await wsconnect({ servers: url })
    : await connect({ servers: url });
  nc.subscribe("bench.raw", {
    callback: (_err, msg) => void msg.respond(msg.data),
  });
  await nc.flush();
  raws.push(nc);
}
console.log(`READY ${JSON.stringify({ node })}`);
// PROF_ALLOC=<file> or PROF_CPU=<file> (bench/_prof_ask.ts): SIGUSR1 starts allocation or CPU
// sampling, SIGTERM writes the profile.
const allocFile = Deno.env.get("PROF_ALLOC");
const cpuFile = Deno.env.get("PROF_CPU");
if (allocFile) Deno.addSignalListener("SIGUSR1", () => void startAllocProfile());
else if (cpuFile) Deno.addSignalListener("SIGUSR1", () => void startCpuProfile());
Deno.addSignalListener("SIGTERM", async () => {
  if (allocFile) await stopAllocProfile(allocFile);
  else if (cpuFile) await stopCpuProfile(cpuFile);
  // The node first: (d) measures how soon others see it leave. Closing the raw WebSocket
  // connection can take ~2 s.
  await system.close();
  await Promise.all(raws.map((nc) => nc.close().catch(() => {})));
  await journal?.close();
  Deno.exit(0);
});
