/** Pub/sub topics as Server-Sent Events through the gateway (`GET /_topics/{topic}`), over real HTTP. */
import assert from "node:assert/strict";
import { createSystem } from "../mod.ts";
import { gateway } from "../adapters/hono/mod.ts";
import { issuer } from "./auth_fixtures.ts";
import { serve, startGateway } from "./gateway_fixtures.ts";
import { within } from "./helpers.ts";

const decoder = new TextDecoder();

/** Reads SSE events as they come: `[event, data]`, comments skipped, each read bounded. */
function eventsOf(res: Response) {
  const reader = res.body!.getReader();
  let buffer = "";
  return {
    async next(ms = 5_000): Promise<[string, unknown] | undefined> {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          let data: string | undefined;
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            if (line.startsWith("data: ")) data = line.slice(6);
          }
          if (data !== undefined) return [event, JSON.parse(data)];
          continue; // a comment
        }
        const r = await within(reader.read(), ms, "an event");
        if (r.done) return undefined;
        buffer += decoder.decode(r.value, { stream: true });
      }
    },
    cancel: () => reader.cancel(),
  };
}

const sse = { accept: "text/event-stream" };

Deno.test("topics: a served topic's messages, plain and durable, one data line of JSON each", async () => {
  await using g = await startGateway({ topics: { "chat.*": "public" } });
  const res = await fetch(`${g.api}/_topics/chat.lobby`, { headers: sse });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const events = eventsOf(res);
  await g.system.publish("chat.lobby", { text: "hi" });
  await g.system.publish("chat.other", "not this one");
  await g.system.publish("chat.lobby", { text: "stored" }, { durable: true });
  assert.deepEqual(await events.next(), ["message", { text: "hi" }]);
  assert.deepEqual(await events.next(), ["message", { text: "stored" }]);
  await events.cancel();
});

Deno.test("topics: a pattern the rules cover streams every topic under it", async () => {
  await using g = await startGateway({ topics: { "chat.>": "public" } });
  const res = await fetch(`${g.api}/_topics/chat.*`, { headers: sse });
  assert.equal(res.status, 200);
  const events = eventsOf(res);
  await g.system.publish("chat.a", 1);
  await g.system.publish("chat.a.b", 2); // not matched by chat.*
  await g.system.publish("chat.b", 3);
  assert.deepEqual(await events.next(), ["message", 1]);
  assert.deepEqual(await events.next(), ["message", 3]);
  await events.cancel();
});

Deno.test("topics: what is not served is 404, a bad topic 400, POST 405 (Allow: GET)", async () => {
  await using g = await startGateway({ topics: { "chat.*": "public" } });
  const get = async (path: string) => {
    const res = await fetch(`${g.api}${path}`, { headers: sse });
    const body = await res.json();
    return [res.status, body.error.code];
  };
  assert.deepEqual(await get("/_topics/orders.new"), [404, "not_found"]);
  assert.deepEqual(await get("/_topics/chat.>"), [404, "not_found"]); // wider than chat.*
  assert.deepEqual(await get("/_topics/chat.a.b"), [404, "not_found"]);
  assert.deepEqual(await get("/_topics/chat..x"), [400, "bad_payload"]);
  assert.deepEqual(await get("/_topics/chat.a/more"), [404, "not_found"]);
  const post = await fetch(`${g.api}/_topics/chat.lobby`, { method: "POST" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET");
  await post.body?.cancel();
  // no topics option: nothing is served
  await using bare = await startGateway();
  const none = await fetch(`${bare.api}/_topics/chat.lobby`, { headers: sse });
  assert.equal(none.status, 404);
  await none.body?.cancel();
});

Deno.test("topics: rules need a verified caller: 401 without a token, 403 without the role", async () => {
  const idp = await issuer();
  const verify = idp.auth;
  await using g = await startGateway({
    auth: { verify },
    topics: { "ops.*": "role:ops", "news.*": "authenticated" },
  });
  const open = (topic: string, token?: string) =>
    fetch(`${g.api}/_topics/${topic}`, {
      headers: token ? { ...sse, authorization: `Bearer ${token}` } : sse,
    });
  const anon = await open("ops.alerts");
  assert.equal(anon.status, 401);
  assert.equal(anon.headers.get("www-authenticate"), "Bearer");
  await anon.body?.cancel();
  const bad = await open("ops.alerts", "junk");
  assert.equal(bad.status, 401);
  await bad.body?.cancel();
  const user = await idp.sign({ sub: "u" });
  const refused = await open("ops.alerts", user);
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
  const news = await open("news.today", user);
  assert.equal(news.status, 200);
  await news.body?.cancel();
  const ops = await open("ops.alerts", await idp.sign({ sub: "o", roles: ["ops"] }));
  assert.equal(ops.status, 200);
  const events = eventsOf(ops);
  await g.system.publish("ops.alerts", "disk full");
  assert.deepEqual(await events.next(), ["message", "disk full"]);
  await events.cancel();
});

Deno.test("topics: rules other than public without auth.verify are refused by gateway()", async () => {
  const system = await createSystem({ logger: "error" });
  try {
    assert.throws(
      () => gateway(system, { expose: {}, topics: { "a.*": "authenticated" } }),
      /auth\.verify/,
    );
    assert.throws(() => gateway(system, { expose: {}, topics: { "a..b": "public" } }), TypeError);
  } finally {
    await system.close();
  }
});

Deno.test("topics: the system's own topic rules apply to the caller's token too", async () => {
  const idp = await issuer();
  const auth = idp.auth;
  const system = await createSystem({
    logger: "silent",
    auth: { ...auth, topics: [{ topic: "chat.*", subscribe: "role:member" }] },
  });
  const { Hono } = await import("hono");
  const app = new Hono();
  app.route("/api", gateway(system, { expose: {}, topics: { "chat.*": "public" } }));
  await using served = serve(app);
  try {
    const guest = await idp.sign({ sub: "g" });
    const refused = await fetch(`${served.url}/api/_topics/chat.lobby`, {
      headers: { ...sse, authorization: `Bearer ${guest}` },
    });
    assert.equal(refused.status, 403);
    assert.equal((await refused.json()).error.code, "forbidden");
    const member = await idp.sign({ sub: "m", roles: ["member"] });
    const ok = await fetch(`${served.url}/api/_topics/chat.lobby`, {
      headers: { ...sse, authorization: `Bearer ${member}` },
    });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
  } finally {
    await served.close();
    await system.close();
  }
});

Deno.test("topics: streams count against the stream limits and give their place back", async () => {
  await using g = await startGateway({
    topics: { "chat.*": "public" },
    limits: { maxStreamsPerCaller: 1 },
  });
  const first = await fetch(`${g.api}/_topics/chat.a`, { headers: sse });
  assert.equal(first.status, 200);
  const second = await fetch(`${g.api}/_topics/chat.b`, { headers: sse });
  assert.equal(second.status, 429);
  await second.body?.cancel();
  await first.body?.cancel();
  // the first stream's place comes back once the server saw it closed
  let status = 0;
  const end = performance.now() + 5_000;
  while (performance.now() < end) {
    const again = await fetch(`${g.api}/_topics/chat.b`, { headers: sse });
    status = again.status;
    await again.body?.cancel();
    if (status === 200) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(status, 200);
});

Deno.test("topics: draining the gateway ends open topic streams with event: error unavailable", async () => {
  const drain = new AbortController();
  await using g = await startGateway({ topics: { "chat.*": "public" }, signal: drain.signal });
  const res = await fetch(`${g.api}/_topics/chat.a`, { headers: sse });
  const events = eventsOf(res);
  await g.system.publish("chat.a", "before");
  assert.deepEqual(await events.next(), ["message", "before"]);
  drain.abort();
  const [event, data] = (await events.next())!;
  assert.equal(event, "error");
  assert.equal((data as { code: string }).code, "unavailable");
  assert.equal(await events.next(), undefined); // the stream ended
});

Deno.test("gateway: the _feed segment is reserved (never an actor id nor a handler)", async () => {
  await using g = await startGateway();
  for (const path of ["/wallet/_feed/deposit", "/wallet/_feed"]) {
    const res = await fetch(`${g.api}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "1",
    });
    assert.equal(res.status, 404, path);
    assert.equal((await res.json()).error.code, "not_found");
  }
});
