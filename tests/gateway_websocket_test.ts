/** The gateway's duplex route: a WebSocket over real HTTP on loopback. */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { createSystem } from "../mod.ts";
import { gateway } from "../adapters/hono/mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { openTicks, serve, startGateway, Wallet } from "./gateway_fixtures.ts";
import { waitFor, within } from "./helpers.ts";

interface Socket {
  ws: WebSocket;
  frames: string[];
  closed: Promise<CloseEvent>;
  next(): Promise<string>;
}

/** Opens a WebSocket and collects its frames; every wait is bounded by the caller. */
async function open(url: string): Promise<Socket> {
  const ws = new WebSocket(url);
  const frames: string[] = [];
  let wake: (() => void) | undefined;
  ws.onmessage = (e) => {
    frames.push(String(e.data));
    wake?.();
  };
  const closed = new Promise<CloseEvent>((resolve) => {
    ws.addEventListener("close", (e) => {
      wake?.();
      resolve(e);
    });
  });
  await within(
    new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`WebSocket ${url} failed`));
    }),
    5_000,
    "the socket to open",
  );
  let read = 0;
  const next = async () => {
    while (frames.length <= read) {
      if (ws.readyState === WebSocket.CLOSED) throw new Error("closed before the next frame");
      await within(new Promise<void>((r) => (wake = r)), 5_000, "a frame");
    }
    return frames[read++]!;
  };
  return { ws, frames, closed, next };
}

Deno.test({
  name: "websocket: each text frame in is one input item, each item out one frame",
  async fn() {
    await using g = await startGateway();
    const s = await open(`${g.api.replace("http:", "ws:")}/wallet/w/shout`);
    s.ws.send(JSON.stringify("hello"));
    assert.equal(JSON.parse(await s.next()), "HELLO");
    s.ws.send(JSON.stringify("again"));
    assert.equal(JSON.parse(await s.next()), "AGAIN");
    s.ws.close(1000);
    await within(s.closed, 5_000, "the close");
  },
});

Deno.test("websocket: items of a streaming handler arrive as frames; closing the socket cancels it", async () => {
  await using g = await startGateway();
  openTicks.now = 0;
  for (let i = 0; i < 20; i++) {
    const s = await open(`${g.api.replace("http:", "ws:")}/wallet/w/ticks`);
    assert.equal(JSON.parse(await s.next()), 0);
    assert.equal(JSON.parse(await s.next()), 1);
    s.ws.close(1000);
    await within(s.closed, 5_000, "the close");
  }
  await waitFor(() => openTicks.now === 0, 5_000, "every actor stream to be cancelled");
});

Deno.test("websocket: a frame that is not JSON closes the socket with 1007", async () => {
  await using g = await startGateway();
  const s = await open(`${g.api.replace("http:", "ws:")}/wallet/w2/ticks`);
  assert.equal(JSON.parse(await s.next()), 0);
  s.ws.send("{not json");
  const e = await within(s.closed, 5_000, "the close");
  assert.equal(e.code, 1007);
});

Deno.test("websocket: a handler that is not exposed is refused before the upgrade (404)", async () => {
  await using g = await startGateway();
  const res = await fetch(`${g.api}/wallet/w/hidden`, {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, "unknown_handler");
});

Deno.test("websocket: websocket: false turns the duplex route off (404 before the upgrade)", async () => {
  await using g = await startGateway({ websocket: false });
  const res = await fetch(`${g.api}/wallet/w/shout`, {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, "not_found");
});

Deno.test("websocket: duplex across the mesh, the gateway on a client node and the actor on a host (NATS)", async () => {
  await using cluster = await startNatsCluster({ servers: 1 });
  const prefix = `g${crypto.randomUUID().slice(0, 8)}`;
  const mesh = () => natsMesh({ servers: cluster.urls[0]!, prefix, leaseTtl: 2000 });
  const host = await createSystem({ actors: [Wallet], mesh: mesh(), logger: "error" });
  const edge = await createSystem({ mesh: mesh(), logger: "error" });
  const app = new Hono();
  app.route("/api", gateway(edge, { expose: { wallet: ["shout"] }, actors: [Wallet] }));
  await using served = serve(app);
  try {
    const s = await open(`${served.url.replace("http:", "ws:")}/api/wallet/w/shout`);
    for (const word of ["one", "two", "three"]) {
      s.ws.send(JSON.stringify(word));
      assert.equal(JSON.parse(await s.next()), word.toUpperCase());
    }
    assert.equal(await edge.directory.locate(Wallet, "w"), host.node, "it ran on the host");
    s.ws.close(1000);
    await within(s.closed, 5_000, "the close");
  } finally {
    await edge.close();
    await host.close();
  }
});
