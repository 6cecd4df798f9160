/**
 * examples/edge under Deno with only `--allow-net --allow-env` (no read, write, run or FFI):
 * a client node over NATS WebSocket (the loopback cluster's `ws://` port; `wss://` in
 * production) that serves the gateway; an actor is called through it, and SIGTERM drains
 * and stops it within 5 s.
 */
import assert from "node:assert/strict";
import { startNatsCluster, startSystems } from "../adapters/testing/mod.ts";
import { Account, Transfer } from "../examples/bank/actors.ts";
import { within } from "./helpers.ts";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

Deno.test("edge: the gateway as a WebSocket client node runs with --allow-net --allow-env only", async () => {
  await using nats = await startNatsCluster({ servers: 1, websocket: true });
  const prefix = `edge${crypto.randomUUID().slice(0, 6)}`;
  await using _cluster = await startSystems({
    actors: [Account, Transfer],
    nodes: 1,
    nats,
    prefix,
  });
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--no-prompt",
      new URL("../examples/edge/main.ts", import.meta.url).pathname,
    ],
    env: {
      NATS_URL: nats.wsUrls[0]!,
      TROUPE_PREFIX: prefix,
      TROUPE_NODE: "edge-1",
      HOSTNAME: "127.0.0.1",
      PORT: String(port),
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: string[] = [];
  const err: string[] = [];
  const collect = async (stream: ReadableStream<Uint8Array>, into: string[]) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) into.push(chunk);
  };
  const reading = Promise.all([collect(child.stdout, out), collect(child.stderr, err)]);
  const base = `http://127.0.0.1:${port}`;
  try {
    await within(
      (async () => {
        while (!out.join("").includes("READY")) {
          assert.ok(!err.join("").includes("error:"), `the edge node failed: ${err.join("")}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        // ready once it sees itself in the cluster's membership
        for (;;) {
          const res = await fetch(`${base}/readyz`);
          const body = await res.json();
          if (res.status === 200) {
            assert.equal(body.node, "edge-1");
            assert.deepEqual(body.unhosted, []);
            return;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })(),
      30_000,
      "the edge node to be ready",
    ).catch((e) => {
      throw new Error(`${e}\nstdout: ${out.join("")}\nstderr: ${err.join("")}`);
    });

    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return [res.status, await res.json()];
    };
    assert.deepEqual(await post("/account/alice/deposit", { amount: 5 }), [200, 5]);
    assert.deepEqual(await post("/account/alice/deposit", { amount: 7 }), [200, 12]);
    assert.deepEqual(await post("/account/alice/withdraw", { amount: 100 }), [422, {
      error: { code: "insufficient", message: "insufficient funds in alice" },
    }]);
    assert.deepEqual(await post("/account/alice/balance", null), [200, 12]);

    // SIGTERM: drains and exits 0 within 5 s
    const t0 = performance.now();
    child.kill("SIGTERM");
    const status = await within(child.status, 6_000, "the edge node to stop");
    assert.equal(status.code, 0, `exit code (stderr: ${err.join("")})`);
    assert.ok(performance.now() - t0 < 5_000);
    await within(reading, 5_000, "the output to end");
    assert.match(out.join(""), /SIGTERM: draining\nstopped\n/);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited
    }
    await child.status;
    await reading.catch(() => {});
  }
});
