/**
 * Hostile traffic on the NATS side, against a real nats-server locked down with
 * `natsAuthConfig()`: what NATS itself bounds (payload size, slow consumers) for a client user
 * that misbehaves, with the nodes serving on. The reply binding of issue 14 item 4 is in
 * adapters/nats/auth_test.ts ("replies are bound to the requester"); forged envelopes (item 3)
 * are the node's check, tested with the routing of issue 13.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { createSystem, defineActor, memoryJournal } from "../mod.ts";
import { NATS_SERVICE_REPLY_PREFIX, natsAuthConfig, natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { rawBody } from "./_wire.ts";
import { waitFor } from "./helpers.ts";

const NODE = { user: "node", pass: "node-pw" };
const GW = { user: "gw", pass: "gw-pw" };
const MIB = 1024 * 1024;

const Echo = defineActor({
  name: "echo",
  stateless: true,
  handlers: { say: (_ctx, value: unknown) => value },
});

/** A server locked down for one node user and the client user gw, with NATS's own limits. */
async function lockedDown() {
  const prefix = `h${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
  const config = natsAuthConfig({
    prefix,
    nodes: [NODE],
    clients: [{ ...GW, call: ["echo"], subscribeTopics: ["news.>"] }],
  }) + 'max_pending: 4MB\nwrite_deadline: "2s"\n';
  const nats = await startNatsCluster({ config, websocket: false });
  const journal = memoryJournal();
  const node = await createSystem({
    actors: [Echo],
    mesh: natsMesh({ servers: nats.urls[0]!, prefix, leaseTtl: 2000, ...NODE }),
    journal,
    logger: "error",
    replyPrefixes: ["_INBOX", NATS_SERVICE_REPLY_PREFIX],
  });
  return {
    prefix,
    nats,
    node,
    /** The server's resident memory, MiB. */
    rss: () => {
      const status = Deno.readTextFileSync(`/proc/${nats.servers[0]!.pid}/status`);
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
    },
    /** A plain client request to the echo worker, as the gw user. */
    async echo(value: unknown): Promise<unknown> {
      const nc = await connect({ servers: nats.urls[0]!, ...GW, timeout: 5000 });
      try {
        const body = rawBody(
          { type: "echo", handler: "say", contentType: "application/json" },
          new TextEncoder().encode(JSON.stringify(value)),
        );
        const r = await nc.request(`${prefix}.w.echo`, body, { timeout: 5000 });
        assert.equal(r.data[0], 0, "an ok reply");
        return JSON.parse(new TextDecoder().decode(r.data.subarray(1)));
      } finally {
        await nc.close();
      }
    },
    async [Symbol.asyncDispose]() {
      await node.close();
      await journal.close();
      await nats.stop();
    },
  };
}

/** A raw client connection logged in as gw: what it sends is up to the test. */
async function rawClient(url: string): Promise<Deno.Conn & { text: () => Promise<string> }> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const buf = new Uint8Array(4096);
  let seen = "";
  const read = async (until: RegExp, ms: number) => {
    const end = performance.now() + ms;
    while (!until.test(seen) && performance.now() < end) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        conn.read(buf),
        new Promise<"late">((r) => timer = setTimeout(() => r("late"), end - performance.now())),
      ]).catch(() => null).finally(() => clearTimeout(timer));
      if (n === null) break;
      if (n === "late") continue;
      seen += new TextDecoder().decode(buf.subarray(0, n));
    }
    return seen;
  };
  await read(/^INFO .*\r\n/, 5_000);
  await conn.write(
    new TextEncoder().encode(
      `CONNECT ${JSON.stringify({ ...GW, verbose: false, pedantic: false, headers: true })}\r\n` +
        "PING\r\n",
    ),
  );
  assert.match(await read(/PONG\r\n/, 5_000), /PONG/);
  return Object.assign(conn, { text: () => read(/-ERR/, 5_000) });
}

Deno.test("hostile NATS: a client user's message over max_payload is refused by the server; the node serves on", async () => {
  await using s = await lockedDown();
  const raw = await rawClient(s.nats.urls[0]!);
  try {
    await raw.write(new TextEncoder().encode(`PUB ${s.prefix}.w.echo ${4 * MIB}\r\n`));
    assert.match(await raw.text(), /-ERR 'Maximum Payload Violation'/);
  } finally {
    raw.close();
  }
  assert.deepEqual(await s.echo({ after: "the attack" }), { after: "the attack" });
});

Deno.test("hostile NATS: a client user that reads nothing is cut off as a slow consumer, within max_pending", async () => {
  await using s = await lockedDown();
  const raw = await rawClient(s.nats.urls[0]!);
  try {
    await raw.write(new TextEncoder().encode(`SUB ${s.prefix}.t.news.> 1\r\nPING\r\n`));
    // from here the client reads nothing: the node publishes 64 MiB of news to it
    const before = s.rss();
    const item = "x".repeat(512 * 1024);
    for (let i = 0; i < 128; i++) await s.node.publish("news.flash", item);
    await waitFor(
      () => s.nats.servers[0]!.logTail().includes("Slow Consumer"),
      10_000,
      "the server to cut the client off as a slow consumer",
    );
    const grown = s.rss() - before;
    assert.ok(grown < 32, `the server grew by ${grown} MiB for 64 MiB it could not deliver`);
  } finally {
    raw.close();
  }
  assert.deepEqual(await s.echo("still serving"), "still serving");
});
