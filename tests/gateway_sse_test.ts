/** Server-Sent Events through the gateway, over real HTTP on loopback. */
import assert from "node:assert/strict";
import { openTicks, startGateway } from "./gateway_fixtures.ts";
import { waitFor, within } from "./helpers.ts";

/** Reads a whole SSE body into `[event, data]` pairs (comments dropped). */
async function events(res: Response): Promise<[string, unknown][]> {
  const text = await res.text();
  const out: [string, unknown][] = [];
  for (const block of text.split("\n\n")) {
    let event = "message";
    let data: string | undefined;
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      if (line.startsWith("data: ")) data = line.slice(6);
    }
    if (data !== undefined) out.push([event, JSON.parse(data)]);
  }
  return out;
}

const sse = { accept: "text/event-stream", "content-type": "application/json" };

Deno.test("sse: a streaming handler's items, one data line of JSON each, then event: end", async () => {
  await using g = await startGateway();
  const deposit = await fetch(`${g.api}/wallet/s/deposit`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "9",
  });
  assert.equal(await deposit.json(), 9);
  const res = await fetch(`${g.api}/wallet/s/statement`, {
    method: "POST",
    headers: sse,
    body: "2",
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  assert.equal(res.headers.get("cache-control"), "no-cache");
  assert.deepEqual(await events(res), [
    ["message", { line: 0, balance: 9 }],
    ["message", { line: 1, balance: 9 }],
    ["end", null],
  ]);
});

Deno.test("sse: GET with ?payload= (for EventSource)", async () => {
  await using g = await startGateway();
  const res = await fetch(`${g.api}/wallet/s/statement?payload=1`, {
    headers: { accept: "text/event-stream" },
  });
  assert.equal(res.status, 200);
  assert.deepEqual(await events(res), [["message", { line: 0, balance: 0 }], ["end", null]]);
});

Deno.test("sse: a failing stream ends with event: error and { code, message }", async () => {
  await using g = await startGateway();
  const res = await fetch(`${g.api}/wallet/f/failing`, { method: "POST", headers: sse, body: "2" });
  assert.deepEqual(await events(res), [
    ["message", 0],
    ["message", 1],
    ["error", { code: "broken", message: "the statement broke" }],
  ]);
});

Deno.test("sse: a stream asked as a plain call, or a plain handler asked as a stream, is 406", async () => {
  await using g = await startGateway();
  const plain = await fetch(`${g.api}/wallet/s/statement`, {
    method: "POST",
    headers: { "content-type": "application/json" },
  });
  assert.equal(plain.status, 406);
  assert.equal((await plain.json()).error.code, "bad_payload");
  const notStream = await fetch(`${g.api}/wallet/s/balance`, { method: "POST", headers: sse });
  assert.equal(notStream.status, 406);
  await notStream.body?.cancel();
  const hidden = await fetch(`${g.api}/wallet/s/hidden`, { method: "POST", headers: sse });
  assert.equal(hidden.status, 404);
  await hidden.body?.cancel();
});

Deno.test("sse: a closed connection cancels the actor stream; 100 aborted requests leave none open", async () => {
  await using g = await startGateway();
  openTicks.now = 0;
  openTicks.started = 0;
  const one = async (id: string) => {
    const abort = new AbortController();
    const res = await fetch(`${g.api}/wallet/${id}/ticks`, {
      method: "POST",
      headers: sse,
      signal: abort.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    let seen = "";
    while (!seen.includes("data: 1\n")) {
      const { done, value } = await reader.read();
      assert.ok(!done, "the stream ended on its own");
      seen += new TextDecoder().decode(value);
    }
    abort.abort();
    await reader.cancel().catch(() => {});
  };
  // ten rounds of ten at once, on ten actors: an actor runs one stream at a time, so a
  // stream that was not cancelled would also hold up the next round on its actor
  for (let round = 0; round < 10; round++) {
    await within(
      Promise.all(Array.from({ length: 10 }, (_, i) => one(`t${i}`))),
      5_000,
      `round ${round} of ten streams`,
    );
  }
  await waitFor(() => openTicks.now === 0, 5_000, "every actor stream to be cancelled");
  assert.equal(openTicks.started, 100);
  assert.equal(openTicks.now, 0);
});

Deno.test("sse: aborting the gateway's signal drains it: streams end with unavailable, /readyz is 503", async () => {
  const drain = new AbortController();
  await using g = await startGateway({ signal: drain.signal });
  openTicks.now = 0;
  const res = await fetch(`${g.api}/wallet/d/ticks`, { method: "POST", headers: sse });
  const reader = res.body!.getReader();
  let seen = "";
  while (!seen.includes("data: 1\n")) seen += new TextDecoder().decode((await reader.read()).value);
  assert.equal((await fetch(`${g.api}/readyz`).then((r) => r.json())).ready, true);
  drain.abort();
  await within(
    (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
    })(),
    5_000,
    "the stream to end",
  );
  assert.match(
    seen,
    /event: error\ndata: \{"code":"unavailable","message":"The gateway is shutting down"\}/,
  );
  await waitFor(() => openTicks.now === 0, 5_000, "the actor stream to be cancelled");
  const ready = await fetch(`${g.api}/readyz`);
  assert.equal(ready.status, 503);
  await ready.body?.cancel();
  const call = await fetch(`${g.api}/wallet/d/balance`, { method: "POST" });
  assert.equal(call.status, 503);
  assert.equal(call.headers.get("retry-after"), "1");
  await call.body?.cancel();
});
