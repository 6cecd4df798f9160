/** The HTTP gateway over real HTTP on loopback: routes, status codes, limits, health. */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { createSystem } from "../mod.ts";
import { msgpack } from "../spi.ts";
import { gateway } from "../adapters/hono/mod.ts";
import { post, Resize, serve, startGateway, Wallet } from "./gateway_fixtures.ts";
import { issuer, Vault } from "./auth_fixtures.ts";

Deno.test("gateway: POST /{type}/{id}/{handler} answers 200 with the reply as JSON", async () => {
  await using g = await startGateway();
  assert.deepEqual(await post(`${g.api}/wallet/alice/deposit`, 5).then((r) => [r.status, r.body]), [
    200,
    5,
  ]);
  assert.deepEqual(await post(`${g.api}/wallet/alice/deposit`, 7).then((r) => r.body), 12);
  const r = await post(`${g.api}/wallet/alice/balance`);
  assert.equal(r.status, 200);
  assert.equal(r.body, 12);
  assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
  // ids are path segments: any UTF-8 id, percent-encoded
  const id = encodeURIComponent("bob/the builder é");
  assert.equal((await post(`${g.api}/wallet/${id}/deposit`, 1)).body, 1);
  assert.equal(await g.system.ref(Wallet, "bob/the builder é").ask("balance"), 1);
});

Deno.test("gateway: a stateless type is POST /{type}/{handler}", async () => {
  await using g = await startGateway();
  assert.deepEqual(await post(`${g.api}/resize/half`, 8).then((r) => [r.status, r.body]), [200, 4]);
  // with an id: a routing hint
  assert.deepEqual(await post(`${g.api}/resize/k1/half`, 8).then((r) => [r.status, r.body]), [
    200,
    4,
  ]);
  // an actor type with state needs an id
  const r = await post(`${g.api}/wallet/balance`);
  assert.equal(r.status, 404);
});

Deno.test("gateway: nothing is exposed unless listed (404 with the error body)", async () => {
  await using g = await startGateway();
  const hidden = await post(`${g.api}/wallet/alice/hidden`);
  assert.equal(hidden.status, 404);
  assert.deepEqual(hidden.body, {
    error: { code: "unknown_handler", message: 'Handler "wallet.hidden" is not exposed' },
  });
  const unknownType = await post(`${g.api}/nope/alice/deposit`, 1);
  assert.equal(unknownType.status, 404);
  assert.equal((unknownType.body as { error: { code: string } }).error.code, "unknown_actor_type");
  const inherited = await post(`${g.api}/resize/toString`);
  assert.equal(inherited.status, 404);
  const other = await fetch(`${g.api}/a/b/c/d`, { method: "POST" });
  assert.equal(other.status, 404);
  assert.equal((await other.json()).error.code, "not_found");
  const get = await fetch(`${g.api}/wallet/alice/balance`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get("allow"), "POST");
  await get.body?.cancel();
});

Deno.test("gateway: errors map to the status codes of the contract", async () => {
  await using g = await startGateway();
  const table: [string, number][] = [
    ["bad_payload", 400],
    ["unauthorized", 401],
    ["forbidden", 403],
    ["unknown_handler", 404],
    ["unknown_actor_type", 404],
    ["conflict", 409],
    ["overloaded", 429],
    ["unavailable", 503],
    ["timeout", 504],
    ["insufficient", 422],
    ["constructor", 422],
    ["internal", 500],
    ["deadlock", 500],
  ];
  for (const [code, status] of table) {
    const r = await post(`${g.api}/wallet/e/raise`, code);
    assert.equal(r.status, status, code);
    assert.deepEqual(r.body, { error: { code, message: `raised ${code}` } }, code);
    if (status === 429 || status === 503) assert.equal(r.headers.get("retry-after"), "1", code);
    else assert.equal(r.headers.get("retry-after"), null, code);
  }
  // a handler's own error keeps its data
  await post(`${g.api}/wallet/poor/deposit`, 3);
  const poor = await post(`${g.api}/wallet/poor/withdraw`, 10);
  assert.equal(poor.status, 422);
  assert.deepEqual(poor.body, {
    error: { code: "insufficient", message: "insufficient funds", data: { balance: 3 } },
  });
  // a bug is masked
  const crash = await post(`${g.api}/wallet/c/crash`);
  assert.equal(crash.status, 500);
  assert.deepEqual(crash.body, { error: { code: "internal", message: "Internal error" } });
});

Deno.test("gateway: real timeouts are 504 and a full mailbox is 429 with Retry-After", async () => {
  await using g = await startGateway({ timeout: 100 });
  const slow = await post(`${g.api}/wallet/s/slow`, 1_000);
  assert.equal(slow.status, 504);
  assert.equal((slow.body as { error: { code: string } }).error.code, "timeout");
  // mailbox of 1: one running, one queued, the rest refused
  const all = await Promise.all(
    Array.from({ length: 6 }, () => post(`${g.api}/tiny/t/slow`, 50)),
  );
  const statuses = all.map((r) => r.status);
  assert.ok(statuses.includes(429), `statuses ${statuses}`);
  const refused = all.find((r) => r.status === 429)!;
  assert.equal((refused.body as { error: { code: string } }).error.code, "overloaded");
  assert.equal(refused.headers.get("retry-after"), "1");
});

Deno.test("gateway: bad bodies are 400, other content types 415", async () => {
  await using g = await startGateway();
  const bad = await fetch(`${g.api}/wallet/a/deposit`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{nope",
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.code, "bad_payload");
  const text = await fetch(`${g.api}/wallet/a/deposit`, {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: "5",
  });
  assert.equal(text.status, 415);
  assert.equal((await text.json()).error.code, "bad_payload");
  // no Content-Type at all: what a page may send anywhere without a CORS preflight
  const untyped = await fetch(`${g.api}/wallet/a/deposit`, {
    method: "POST",
    body: new Blob(["5"]), // a Blob without a type: fetch sends no Content-Type
  });
  assert.equal(untyped.status, 415);
  assert.deepEqual(await untyped.json(), {
    error: {
      code: "bad_payload",
      message: "A request body needs a Content-Type: application/json or application/msgpack",
    },
  });
  // a form a page can post to any origin
  const form = await fetch(`${g.api}/wallet/a/deposit`, {
    method: "POST",
    body: new URLSearchParams({ amount: "5" }),
  });
  assert.equal(form.status, 415);
  await form.body?.cancel();
  assert.equal(await g.system.ref(Wallet, "a").ask("balance"), 0, "nothing ran");
  // an empty body needs no type (a handler without payload)
  assert.equal((await fetch(`${g.api}/wallet/a/balance`, { method: "POST" })).status, 200);
  const proto = await fetch(`${g.api}/wallet/a/echo`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"__proto__":{"x":1}}',
  });
  assert.equal(proto.status, 400);
  await proto.body?.cancel();
});

Deno.test("gateway: JSON bodies are Troupe's tagged JSON, whether they come with the head or after it", async () => {
  await using g = await startGateway();
  const echo = `${g.api}/wallet/j/echo`;
  const nested = (d: number) => "[".repeat(d) + "]".repeat(d);
  const send = (body: string) =>
    fetch(echo, { method: "POST", headers: { "content-type": "application/json" }, body });
  // with the head (one write): tags are values, the nesting bound and __proto__ hold
  const tagged = await send('{"n":{"$bigint":"10"},"at":{"$date":"1970-01-01T00:00:00.000Z"}}');
  assert.deepEqual(await tagged.json(), {
    n: { $bigint: "10" },
    at: { $date: "1970-01-01T00:00:00.000Z" },
  });
  assert.equal((await send(nested(64))).status, 200);
  for (const body of [nested(65), '{"a":{"__proto__":1}}', '{"$date":"x"}', "{nope"]) {
    const r = await send(body);
    assert.equal(r.status, 400, body);
    assert.equal((await r.json()).error.code, "bad_payload");
  }
  // after the head (a second write some time later): the same answers
  const { port } = new URL(g.api);
  const late = async (body: string): Promise<string> => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
    try {
      const bytes = new TextEncoder().encode(body);
      await conn.write(
        new TextEncoder().encode(
          "POST /api/wallet/j/echo HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n" +
            `content-type: application/json\r\ncontent-length: ${bytes.length}\r\n\r\n`,
        ),
      );
      await new Promise((r) => setTimeout(r, 50));
      await conn.write(bytes);
      let text = "";
      const buf = new Uint8Array(4096);
      const timer = setTimeout(() => conn.close(), 5_000);
      try {
        for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
          text += new TextDecoder().decode(buf.subarray(0, n));
        }
      } finally {
        clearTimeout(timer);
      }
      return text;
    } finally {
      try {
        conn.close();
      } catch {
        // closed by the server or the timer
      }
    }
  };
  // a byte order mark (which RFC 8259 forbids a sender to add): refused by name when the body
  // comes with the head (Deno parses that text as it is), dropped after it (Deno's other path)
  const bom = await fetch(echo, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: new Uint8Array([0xef, 0xbb, 0xbf, 0x31]),
  });
  assert.equal(bom.status, 400);
  assert.deepEqual(await bom.json(), {
    error: {
      code: "bad_payload",
      message: "A JSON body must not start with a byte order mark (U+FEFF): send it without",
    },
  });
  assert.match(await late("\uFEFF1"), /\r\n\r\n1$/);
  const slow = await late('{"n":{"$bigint":"10"}}');
  assert.match(slow, /^HTTP\/1\.1 200 /);
  assert.match(slow, /\r\n\r\n\{"n":\{"\$bigint":"10"\}\}$/);
  for (const body of [nested(65), '{"__proto__":1}', "{nope"]) {
    const answer = await late(body);
    assert.match(answer, /^HTTP\/1\.1 400 /, body);
    assert.match(answer, /"code":"bad_payload"/);
  }
});

Deno.test("gateway: bodies over maxBody are 413, by Content-Length and while streaming", async () => {
  await using g = await startGateway({ maxBody: 1024 });
  const big = JSON.stringify("x".repeat(2000));
  const declared = await fetch(`${g.api}/wallet/a/echo`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: big,
  });
  assert.equal(declared.status, 413);
  assert.deepEqual(await declared.json(), {
    error: {
      code: "bad_payload",
      message: "Request body of 2002 bytes exceeds the limit of 1024 bytes",
    },
  });
  // no Content-Length (chunked): counted while read. A raw connection sends 2 KiB and then
  // nothing more: the 413 can only come if the gateway stopped before the end.
  const { port } = new URL(g.api);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  try {
    const chunk = '"' + "x".repeat(2047);
    await conn.write(
      new TextEncoder().encode(
        "POST /api/wallet/a/echo HTTP/1.1\r\nhost: 127.0.0.1\r\n" +
          "content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n" +
          `${chunk.length.toString(16)}\r\n${chunk}\r\n`,
      ),
    );
    const buf = new Uint8Array(4096);
    let text = "";
    const end = performance.now() + 5_000;
    while (!text.includes("bad_payload") && performance.now() < end) {
      const timer = setTimeout(() => conn.close(), 5_000);
      const n = await conn.read(buf).finally(() => clearTimeout(timer));
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.match(text, /"code":"bad_payload"/);
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
  }
  // under the limit is fine
  const ok = await post(`${g.api}/wallet/a/echo`, "x".repeat(1000));
  assert.equal(ok.status, 200);
});

Deno.test("gateway: MessagePack bodies, and MessagePack replies on request", async () => {
  await using g = await startGateway();
  const res = await fetch(`${g.api}/wallet/m/echo`, {
    method: "POST",
    headers: { "content-type": "application/msgpack", accept: "application/msgpack" },
    body: msgpack.encode({ n: 10n, at: new Date(0), bytes: new Uint8Array([1, 2]) }) as Uint8Array<
      ArrayBuffer
    >,
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/msgpack");
  assert.deepEqual(msgpack.decode(new Uint8Array(await res.arrayBuffer())), {
    n: 10n,
    at: new Date(0),
    bytes: new Uint8Array([1, 2]),
  });
  // the same value as JSON: Troupe's tagged JSON
  const asJson = await fetch(`${g.api}/wallet/m/echo`, {
    method: "POST",
    headers: { "content-type": "application/msgpack" },
    body: msgpack.encode({ n: 10n }) as Uint8Array<ArrayBuffer>,
  });
  assert.deepEqual(await asJson.json(), { n: { $bigint: "10" } });
});

Deno.test("gateway: Prefer: respond-async sends a tell and answers 202", async () => {
  await using g = await startGateway();
  const r = await post(`${g.api}/wallet/t/deposit`, 4, { prefer: "respond-async" });
  assert.equal(r.status, 202);
  assert.equal(r.body, undefined);
  assert.equal(r.headers.get("preference-applied"), "respond-async");
  const end = performance.now() + 2_000;
  while ((await g.system.ref(Wallet, "t").ask("balance")) !== 4) {
    assert.ok(performance.now() < end, "the tell was handled");
    await new Promise((r) => setTimeout(r, 10));
  }
});

Deno.test("gateway: a Request not from Deno.serve (app.request()) reads its headers alike", async () => {
  // the gateway reads a Deno.serve request's headers from the server; any other Request
  // through its Headers: the same headers decide the same way
  const system = await createSystem({ actors: [Wallet], logger: "error" });
  try {
    const app = new Hono().route("/api", gateway(system, { expose: [Wallet] }));
    // a request from the server first, so that the gateway knows Deno's way
    await using served = serve(app);
    assert.equal((await post(`${served.url}/api/wallet/r/deposit`, 1)).body, 1);
    const call = (headers: Record<string, string>, body: string) =>
      app.request("/api/wallet/r/deposit", { method: "POST", headers, body });
    const json = { "content-type": "application/json" };
    assert.deepEqual(await (await call(json, "2")).json(), 3);
    const key = { ...json, "idempotency-key": "k1" };
    assert.deepEqual(await (await call(key, "5")).json(), 8);
    assert.deepEqual(await (await call(key, "5")).json(), 8, "applied once");
    const told = await call({ ...json, prefer: "respond-async" }, "1");
    assert.equal(told.status, 202);
    const packed = await call({ ...json, accept: "application/msgpack" }, "1");
    assert.equal(packed.headers.get("content-type"), "application/msgpack");
    assert.ok(msgpack.decode(new Uint8Array(await packed.arrayBuffer())) as number >= 9);
    assert.equal((await call({}, "1")).status, 415);
    const basic = await call({ ...json, authorization: "Basic abc" }, "1");
    assert.equal(basic.status, 401);
    await basic.body?.cancel();
  } finally {
    await system.close();
  }
});

Deno.test("gateway: Idempotency-Key applies a retried call once", async () => {
  await using g = await startGateway();
  const h = { "idempotency-key": "tx-1" };
  assert.equal((await post(`${g.api}/wallet/i/deposit`, 5, h)).body, 5);
  assert.equal((await post(`${g.api}/wallet/i/deposit`, 5, h)).body, 5);
  assert.equal(
    (await post(`${g.api}/wallet/i/deposit`, 5, { "idempotency-key": "tx-2" })).body,
    10,
  );
  assert.equal(await g.system.ref(Wallet, "i").ask("balance"), 10);
});

Deno.test("gateway: Authorization must be a Bearer token; auth.required refuses calls without one", async () => {
  await using g = await startGateway({ auth: { required: true } });
  const none = await post(`${g.api}/wallet/a/balance`);
  assert.equal(none.status, 401);
  assert.equal((none.body as { error: { code: string } }).error.code, "unauthorized");
  assert.equal(none.headers.get("www-authenticate"), "Bearer");
  const basic = await post(`${g.api}/wallet/a/balance`, undefined, { authorization: "Basic abc" });
  assert.equal(basic.status, 401);
  assert.equal(basic.headers.get("www-authenticate"), 'Bearer error="invalid_token"');
  // a bearer token is forwarded to the node (which has no auth here, so the call runs)
  const bearer = await post(`${g.api}/wallet/a/balance`, undefined, {
    authorization: "Bearer x.y.z",
  });
  assert.equal(bearer.status, 200);
});

Deno.test("gateway: /healthz while serving, /readyz while a live member", async () => {
  const system = await createSystem({ actors: [Wallet], logger: "error" });
  const app = new Hono();
  app.route("/", gateway(system, { expose: [Wallet, Resize] }));
  await using served = serve(app);
  try {
    const health = await fetch(`${served.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { ok: true, node: system.node });
    const ready = await fetch(`${served.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), {
      ready: true,
      status: "running",
      node: system.node,
      nodes: 1,
      unhosted: ["resize"],
    });
  } finally {
    await system.close();
  }
  const closed = await fetch(`${served.url}/readyz`);
  assert.equal(closed.status, 503);
  assert.deepEqual(
    { ...(await closed.json()), node: undefined },
    { ready: false, status: "closed", node: undefined, nodes: 0, unhosted: ["wallet", "resize"] },
  );
  assert.equal((await fetch(`${served.url}/healthz`).then((r) => r.json())).ok, true);
  // calls on a closed node are 503 with Retry-After
  const call = await post(`${served.url}/wallet/a/balance`);
  assert.equal(call.status, 503);
  assert.equal(call.headers.get("retry-after"), "1");
});

Deno.test("gateway: CORS when asked for, with preflight", async () => {
  await using g = await startGateway({ cors: { origin: "http://127.0.0.1:9" } });
  const pre = await fetch(`${g.api}/wallet/a/deposit`, {
    method: "OPTIONS",
    headers: {
      origin: "http://127.0.0.1:9",
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type",
    },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "http://127.0.0.1:9");
  await pre.body?.cancel();
  const r = await post(`${g.api}/wallet/a/deposit`, 1, { origin: "http://127.0.0.1:9" });
  assert.equal(r.headers.get("access-control-allow-origin"), "http://127.0.0.1:9");
  // off by default
  await using plain = await startGateway();
  const p = await post(`${plain.api}/wallet/a/deposit`, 1, { origin: "http://127.0.0.1:9" });
  assert.equal(p.headers.get("access-control-allow-origin"), null);
});

Deno.test("gateway: in-process with app.request()", async () => {
  const system = await createSystem({ actors: [Wallet], logger: "error" });
  try {
    const app = gateway(system, { expose: { wallet: ["deposit"] } });
    const res = await app.request("/wallet/z/deposit", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "2",
    });
    assert.equal(res.status, 200);
    assert.equal(await res.json(), 2);
  } finally {
    await system.close();
  }
});

Deno.test("gateway: the Bearer token is the call's token, verified by the node (401, 403, 200)", async () => {
  const idp = await issuer();
  const system = await createSystem({
    actors: [Vault],
    logger: "error",
    auth: idp.auth,
  });
  const app = new Hono();
  app.route("/", gateway(system, { expose: [Vault] }));
  await using served = serve(app);
  try {
    const call = (path: string, token?: string) =>
      fetch(`${served.url}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: "5",
      });
    const none = await call("/vault/alice/deposit");
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("www-authenticate"), "Bearer");
    assert.equal((await none.json()).error.code, "unauthorized");
    const bob = await idp.sign({ sub: "bob" });
    const alice = await idp.sign({ sub: "alice" });
    assert.equal(await (await call("/vault/alice/deposit", bob)).json(), 5);
    const forbidden = await call("/vault/alice/withdraw", bob);
    assert.equal(forbidden.status, 403);
    assert.equal((await forbidden.json()).error.code, "forbidden");
    assert.equal(await (await call("/vault/alice/withdraw", alice)).json(), 0);
    const garbage = await call("/vault/alice/deposit", "garbage");
    assert.equal(garbage.status, 401);
    assert.equal(garbage.headers.get("www-authenticate"), 'Bearer error="invalid_token"');
    await garbage.body?.cancel();
  } finally {
    await system.close();
  }
});
