/**
 * The dashboard's routes over HTTP: who may see the cluster's data, and what they get.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { createSystem } from "../mod.ts";
import { dashboard } from "../adapters/hono/mod.ts";
import { issuer } from "./auth_fixtures.ts";
import { Account, Counter } from "./fixtures.ts";

function mount(app: Hono, path = "/troupe") {
  const root = new Hono();
  root.route(path, app);
  return (url: string, init?: RequestInit) => root.request(url, init);
}

Deno.test("dashboard: closed by default on a system without auth; access: public opens it", async () => {
  await using system = await createSystem({ node: "n1", actors: [Counter] });
  await system.ref(Counter, "c1").ask("inc", 1);

  const closed = mount(dashboard(system));
  const refused = await closed("/troupe/api/stats");
  assert.equal(refused.status, 403);
  const body = await refused.json();
  assert.equal(body.error.code, "forbidden");
  assert.match(body.error.message, /access: "public"/);
  assert.equal((await closed("/troupe/api/events")).status, 403);
  assert.equal((await closed("/troupe/api/actors/counter/c1")).status, 403);
  // The page itself holds no data: it is served, and asks for a token when refused.
  const page = await closed("/troupe");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type")!, /text\/html/);
  assert.match(page.headers.get("content-security-policy")!, /default-src 'none'/);
  const html = await page.text();
  assert.match(html, /src="\/troupe\/dashboard\.js"/);
  assert.doesNotMatch(html, /counter|c1/);
  assert.equal((await closed("/troupe/")).status, 200);
  assert.equal((await closed("/troupe/dashboard.js")).status, 200);
  assert.equal((await closed("/troupe/nothing")).status, 404);

  const open = mount(dashboard(system, { access: "public" }));
  const stats = await (await open("/troupe/api/stats")).json();
  assert.deepEqual(stats.nodes.map((n: { id: string }) => n.id), ["n1"]);
  assert.equal(stats.nodes[0].actors[0].activations, 1);
});

Deno.test("dashboard: with auth only role:admin by default; a bad or missing token is 401", async () => {
  const idp = await issuer();
  await using system = await createSystem({
    node: "n1",
    actors: [Account],
    auth: idp.auth,
  });
  const request = mount(dashboard(system));
  const get = (path: string, token?: string) =>
    request(path, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  const admin = await idp.sign({ sub: "ada", roles: ["admin"] });
  const teller = await idp.sign({ sub: "tom", roles: ["teller"] });

  const anonymous = await get("/troupe/api/stats");
  assert.equal(anonymous.status, 401);
  assert.equal((await anonymous.json()).error.code, "unauthorized");
  assert.equal((await get("/troupe/api/stats", "not-a-jwt")).status, 401);
  assert.equal(
    (await request("/troupe/api/stats", { headers: { authorization: "Basic YTpi" } })).status,
    401,
  );
  const forbidden = await get("/troupe/api/stats", teller);
  assert.equal(forbidden.status, 403);
  assert.equal((await forbidden.json()).error.code, "forbidden");
  assert.equal((await get("/troupe/api/events", teller)).status, 403);

  const ok = await get("/troupe/api/stats", admin);
  assert.equal(ok.status, 200);
  assert.deepEqual((await ok.json()).nodes.map((n: { id: string }) => n.id), ["n1"]);

  // Another rule: any verified caller.
  const anyone = mount(dashboard(system, { access: "authenticated" }));
  const res = await anyone("/troupe/api/stats", { headers: { authorization: `Bearer ${teller}` } });
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

Deno.test("dashboard: live figures over SSE and the actor inspector", async () => {
  await using system = await createSystem({ node: "n1", actors: [Account] });
  const request = mount(dashboard(system, { access: "public", interval: 50 }));
  const alice = system.ref(Account, "alice");
  await alice.ask("deposit", 5);
  await alice.ask("deposit", 7);

  const res = await request("/troupe/api/events", { headers: { accept: "text/event-stream" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /text\/event-stream/);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const next = async () => {
    let buf = "";
    for (;;) {
      const i = buf.indexOf("\n\n");
      if (i >= 0) {
        const data = buf.slice(0, i).split("\n").find((l) => l.startsWith("data: "));
        buf = buf.slice(i + 2);
        if (data) return JSON.parse(data.slice(6));
        continue;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended");
      buf += value;
    }
  };
  const first = await next();
  assert.equal(first.nodes[0].actors[0].activations, 1);
  await system.ref(Account, "bob").ask("deposit", 1);
  // The next reports follow every 50 ms; bob shows up in one of them.
  let seen = first;
  for (let i = 0; i < 100 && seen.nodes[0].actors[0].activations < 2; i++) seen = await next();
  assert.equal(seen.nodes[0].actors[0].activations, 2);
  await reader.cancel();

  const report = await (await request("/troupe/api/actors/account/alice?events=1")).json();
  assert.equal(report.node, "n1");
  assert.equal(report.seq, 2);
  assert.deepEqual(report.events.map((e: { payload: unknown }) => e.payload), [{ amount: 7 }]);
  const unknown = await request("/troupe/api/actors/nope/x");
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).error.code, "unknown_actor_type");
  assert.equal((await request("/troupe/api/actors/account/alice?events=-1")).status, 400);
});
