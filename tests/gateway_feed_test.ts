/**
 * Event feeds as Server-Sent Events through the gateway (`GET /{type}/_feed`), over real HTTP:
 * ids are positions, `Last-Event-ID` and `?after=` resume, the `feeds` rules, the stream
 * limits, and a feed over three libSQL shards.
 */
import assert from "node:assert/strict";
import { createSystem, defineActor, memoryJournal, type System } from "../mod.ts";
import { type FeedMessage, gateway } from "../adapters/hono/mod.ts";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { issuer } from "./auth_fixtures.ts";
import { serve, startGateway, Wallet } from "./gateway_fixtures.ts";
import { within } from "./helpers.ts";

const decoder = new TextDecoder();
const sse = { accept: "text/event-stream" };

/** One SSE message: its event name (`message` by default), id and parsed data. */
interface Message {
  event: string;
  id: string | undefined;
  data: unknown;
}

/** Reads SSE messages as they come, comments skipped, each read bounded. */
function messagesOf(res: Response) {
  const reader = res.body!.getReader();
  let buffer = "";
  return {
    async next(ms = 5_000): Promise<Message | undefined> {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          let id: string | undefined;
          let data: string | undefined;
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            if (line.startsWith("id: ")) id = line.slice(4);
            if (line.startsWith("data: ")) data = line.slice(6);
          }
          if (data !== undefined) return { event, id, data: JSON.parse(data) };
          continue; // a comment
        }
        const r = await within(reader.read(), ms, "an SSE message");
        if (r.done) return undefined;
        buffer += decoder.decode(r.value, { stream: true });
      }
    },
    /** The next `n` feed events (each must be a plain message with an id). */
    async take(n: number): Promise<FeedMessage[]> {
      const out: FeedMessage[] = [];
      while (out.length < n) {
        const m = await this.next();
        assert.ok(m, `the stream ended after ${out.length} of ${n} events`);
        assert.equal(m.event, "message");
        const data = m.data as FeedMessage;
        assert.equal(m.id, data.position, "the id is the event's position");
        out.push(data);
      }
      return out;
    },
    cancel: () => reader.cancel(),
  };
}

/** `id:amount` of each event, to compare sequences. */
const keys = (events: readonly FeedMessage[]) =>
  events.map((e) => `${e.id}:${(e.payload as { amount: number }).amount}`);

/** Every stored event of the wallets, as the system's own feed gives them. */
async function stored(system: System): Promise<{ key: string; position: string }[]> {
  const out: { key: string; position: string }[] = [];
  for await (const e of system.feed(Wallet, { live: false })) {
    out.push({ key: `${e.id}:${(e.payload as { amount: number }).amount}`, position: e.position });
  }
  return out;
}

const deposit = (system: System, id: string, amount: number) =>
  system.ref(Wallet, id).ask("deposit", amount);

Deno.test("feed: the stored events then live ones, in order, one message each with id = position", async () => {
  await using g = await startGateway({ feeds: { wallet: "public" } });
  await deposit(g.system, "alice", 1);
  await deposit(g.system, "bob", 2);
  await deposit(g.system, "alice", 3);
  const res = await fetch(`${g.api}/wallet/_feed`, { headers: sse });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const feed = messagesOf(res);
  const backlog = await feed.take(3);
  assert.deepEqual(keys(backlog), ["alice:1", "bob:2", "alice:3"]);
  const first = backlog[0]!;
  assert.equal(first.actorType, "wallet");
  assert.equal(first.seq, 1);
  assert.equal(first.type, "deposited");
  assert.deepEqual(first.payload, { amount: 1 });
  assert.ok(Math.abs(Date.parse(first.at) - Date.now()) < 60_000, "at is an ISO time");
  assert.equal(backlog[2]!.seq, 2, "alice's second event");
  // live: appended after the stream caught up
  await deposit(g.system, "bob", 4);
  await g.system.ref(Wallet, "bob").ask("withdraw", 100).catch(() => {}); // refused: no event
  await deposit(g.system, "carol", 6);
  const live = await feed.take(2);
  assert.deepEqual(keys(live), ["bob:4", "carol:6"]);
  assert.deepEqual(
    [...backlog, ...live].map((e) => e.position),
    (await stored(g.system)).map((s) => s.position),
    "the positions of system.feed(), in its order",
  );
  await feed.cancel();
});

Deno.test("feed: a reconnect with Last-Event-ID gets exactly the events after it, those appended meanwhile included", async () => {
  await using g = await startGateway({ feeds: { wallet: "public" } });
  for (let i = 1; i <= 4; i++) await deposit(g.system, i % 2 ? "alice" : "bob", i);
  const first = messagesOf(await fetch(`${g.api}/wallet/_feed`, { headers: sse }));
  const before = await first.take(2);
  await first.cancel();
  // appended while no one follows
  await deposit(g.system, "carol", 5);
  await deposit(g.system, "alice", 6);
  const res = await fetch(`${g.api}/wallet/_feed`, {
    headers: { ...sse, "last-event-id": before[1]!.position },
  });
  assert.equal(res.status, 200);
  const again = messagesOf(res);
  const after = await again.take(4);
  await deposit(g.system, "bob", 7); // and live ones after those
  const live = await again.take(1);
  await again.cancel();
  const all = [...before, ...after, ...live];
  assert.deepEqual(keys(all), (await stored(g.system)).map((s) => s.key), "none lost, none twice");
  assert.deepEqual(keys(all), [
    "alice:1",
    "bob:2",
    "alice:3",
    "bob:4",
    "carol:5",
    "alice:6",
    "bob:7",
  ]);
});

Deno.test("feed: ?after= starts after a position; Last-Event-ID wins over it", async () => {
  await using g = await startGateway({ feeds: { wallet: "public" } });
  for (let i = 1; i <= 5; i++) await deposit(g.system, "alice", i);
  const all = await stored(g.system);
  const query = messagesOf(
    await fetch(`${g.api}/wallet/_feed?after=${encodeURIComponent(all[1]!.position)}`, {
      headers: sse,
    }),
  );
  assert.deepEqual(keys(await query.take(3)), ["alice:3", "alice:4", "alice:5"]);
  await query.cancel();
  // an EventSource reconnects to the same URL, with the newer position in the header
  const both = messagesOf(
    await fetch(`${g.api}/wallet/_feed?after=${all[1]!.position}`, {
      headers: { ...sse, "last-event-id": all[3]!.position },
    }),
  );
  assert.deepEqual(keys(await both.take(1)), ["alice:5"]);
  await both.cancel();
});

Deno.test("feed: a string that is not a position is 400 bad_payload, never a restart from the start", async () => {
  await using g = await startGateway({ feeds: { wallet: "public" } });
  await deposit(g.system, "alice", 1);
  const cases: [string, Record<string, string>][] = [
    ["?after=junk", {}],
    ["?after=f1.-1", {}],
    ["?after=f1.1.2", {}], // a position of a journal with two shards; this one has one
    ["", { "last-event-id": "f2.1" }],
    ["?after=" + "1".repeat(2000), {}],
  ];
  for (const [query, headers] of cases) {
    const res = await fetch(`${g.api}/wallet/_feed${query}`, { headers: { ...sse, ...headers } });
    assert.equal(res.status, 400, query || JSON.stringify(headers));
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal((await res.json()).error.code, "bad_payload");
  }
  // the refused requests gave their stream places back: a good one is served
  const ok = await fetch(`${g.api}/wallet/_feed?after=`, { headers: sse });
  assert.equal(ok.status, 200);
  const feed = messagesOf(ok);
  assert.deepEqual(keys(await feed.take(1)), ["alice:1"]);
  await feed.cancel();
});

Deno.test("feed: a type not listed in feeds is 404, POST is 405 (Allow: GET)", async () => {
  await using g = await startGateway({ feeds: { wallet: "public" } });
  const get = async (path: string) => {
    const res = await fetch(`${g.api}${path}`, { headers: sse });
    return [res.status, (await res.json()).error.code];
  };
  assert.deepEqual(await get("/tiny/_feed"), [404, "not_found"]);
  assert.deepEqual(await get("/nothing/_feed"), [404, "not_found"]);
  assert.deepEqual(await get("/wallet/_feed/more"), [404, "not_found"]);
  const post = await fetch(`${g.api}/wallet/_feed`, { method: "POST" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET");
  await post.body?.cancel();
  // no feeds option: nothing is served
  await using bare = await startGateway();
  const none = await fetch(`${bare.api}/wallet/_feed`, { headers: sse });
  assert.equal(none.status, 404);
  await none.body?.cancel();
});

Deno.test("feed: rules need a verified caller: 401 without a token, 403 without the role", async () => {
  const idp = await issuer();
  const verify = idp.auth;
  await using g = await startGateway({
    auth: { verify },
    feeds: { wallet: "authenticated", tiny: ["role:auditor"] },
  });
  await deposit(g.system, "alice", 1);
  const open = (type: string, token?: string) =>
    fetch(`${g.api}/${type}/_feed`, {
      headers: token ? { ...sse, authorization: `Bearer ${token}` } : sse,
    });
  const anon = await open("wallet");
  assert.equal(anon.status, 401);
  assert.equal(anon.headers.get("www-authenticate"), "Bearer");
  assert.equal((await anon.json()).error.code, "unauthorized");
  const bad = await open("wallet", "junk");
  assert.equal(bad.status, 401);
  await bad.body?.cancel();
  const user = await idp.sign({ sub: "u" });
  const refused = await open("tiny", user);
  assert.equal(refused.status, 403);
  assert.equal((await refused.json()).error.code, "forbidden");
  const auditor = await open("tiny", await idp.sign({ sub: "a", roles: ["auditor"] }));
  assert.equal(auditor.status, 200);
  await auditor.body?.cancel();
  const wallet = await open("wallet", user);
  assert.equal(wallet.status, 200);
  const feed = messagesOf(wallet);
  assert.deepEqual(keys(await feed.take(1)), ["alice:1"]);
  await feed.cancel();
});

Deno.test("feed: gateway() refuses rules other than public without auth.verify, and bad entries", async () => {
  const system = await createSystem({ logger: "error" });
  try {
    assert.throws(
      () => gateway(system, { expose: {}, feeds: { account: "authenticated" } }),
      /auth\.verify/,
    );
    assert.throws(() => gateway(system, { expose: {}, feeds: { _x: "public" } }), TypeError);
    assert.throws(
      () =>
        gateway(system, {
          expose: {},
          feeds: { account: null as unknown as "public" },
        }),
      TypeError,
    );
    assert.throws(
      () =>
        gateway(system, { expose: {}, feeds: { account: { access: "public", actor: Wallet } } }),
      /definition of "wallet"/,
    );
  } finally {
    await system.close();
  }
});

Deno.test("feed: streams count against the stream limits, end after streamTimeout, and end with unavailable on drain", async () => {
  const drain = new AbortController();
  await using g = await startGateway({
    feeds: { wallet: "public" },
    limits: { maxStreamsPerCaller: 1 },
    signal: drain.signal,
  });
  await deposit(g.system, "alice", 1);
  const first = await fetch(`${g.api}/wallet/_feed`, { headers: sse });
  assert.equal(first.status, 200);
  const second = await fetch(`${g.api}/wallet/_feed`, { headers: sse });
  assert.equal(second.status, 429);
  assert.equal((await second.json()).error.code, "rate_limited");
  const feed = messagesOf(first);
  assert.deepEqual(keys(await feed.take(1)), ["alice:1"]);
  drain.abort();
  const end = await feed.next();
  assert.equal(end?.event, "error");
  assert.equal((end?.data as { code: string }).code, "unavailable");
  assert.equal(await feed.next(), undefined, "the stream ended");
  // a draining gateway opens no new feed
  const late = await fetch(`${g.api}/wallet/_feed`, { headers: sse });
  assert.equal(late.status, 503);
  await late.body?.cancel();

  await using short = await startGateway({ feeds: { wallet: "public" }, streamTimeout: 300 });
  await deposit(short.system, "bob", 2);
  const timed = messagesOf(await fetch(`${short.api}/wallet/_feed`, { headers: sse }));
  assert.deepEqual(keys(await timed.take(1)), ["bob:2"]);
  const over = await timed.next();
  assert.equal(over?.event, "end");
  assert.equal(await timed.next(), undefined);
});

Deno.test("feed: a definition given in feeds upcasts older payloads; without one they come as stored", async () => {
  const journal = memoryJournal();
  const V1 = defineActor({
    name: "purse",
    initialState: () => 0,
    events: { credited: (s, e: { cents: number }) => s + e.cents / 100 },
    handlers: {
      credit(ctx, cents: number) {
        ctx.emit("credited", { cents });
        return ctx.state;
      },
    },
  });
  const old = await createSystem({ actors: [V1], journal, logger: "error" });
  await old.ref(V1, "p").ask("credit", 250);
  await old.close();
  const V2 = defineActor({
    name: "purse",
    initialState: () => 0,
    events: { credited: (s, e: { amount: number }) => s + e.amount },
    upcasters: { credited: { 1: (p) => ({ amount: (p as { cents: number }).cents / 100 }) } },
    handlers: {
      credit(ctx, amount: number) {
        ctx.emit("credited", { amount });
        return ctx.state;
      },
    },
  });
  const system = await createSystem({ actors: [V2], journal, logger: "error" });
  await system.ref(V2, "p").ask("credit", 1);
  const { Hono } = await import("hono");
  const app = new Hono();
  // a type not exposed: its definition given with its rule
  app.route(
    "/with",
    gateway(system, { expose: {}, feeds: { purse: { access: "public", actor: V2 } } }),
  );
  // no definition anywhere: the payloads as they were stored
  app.route("/bare", gateway(system, { expose: {}, feeds: { purse: "public" } }));
  const served = serve(app);
  try {
    const read = async (mount: string) => {
      const feed = messagesOf(await fetch(`${served.url}/${mount}/purse/_feed`, { headers: sse }));
      const events = await feed.take(2);
      await feed.cancel();
      return events.map((e) => e.payload);
    };
    assert.deepEqual(await read("with"), [{ amount: 2.5 }, { amount: 1 }]);
    assert.deepEqual(await read("bare"), [{ cents: 250 }, { amount: 1 }]);
  } finally {
    await served.close();
    await system.close();
    await journal.close();
  }
});

Deno.test("feed over three libSQL shards through the gateway: resumes with Last-Event-ID without losing or repeating an event", async () => {
  const dir = await Deno.makeTempDir();
  const journal = libsqlJournal({ shards: [0, 1, 2].map((i) => `file:${dir}/shard-${i}.db`) });
  const system = await createSystem({ actors: [Wallet], journal, logger: "error" });
  const { Hono } = await import("hono");
  const app = new Hono();
  app.route("/api", gateway(system, { expose: {}, actors: [Wallet], feeds: { wallet: "public" } }));
  const served = serve(app);
  try {
    const ids = Array.from({ length: 9 }, (_, i) => `w${i}`);
    await Promise.all(ids.map(async (id) => {
      for (let i = 1; i <= 3; i++) await deposit(system, id, i);
    }));
    assert.equal(new Set(ids.map((id) => journal.shardOf(`wallet/${id}`))).size, 3);
    const url = `${served.url}/api/wallet/_feed`;
    const first = messagesOf(await fetch(url, { headers: sse }));
    const part1 = await first.take(12);
    await first.cancel();
    assert.equal(part1[0]!.position.split(".").length, 4, "a position over three shards");
    // appended while disconnected, to every shard
    await Promise.all(ids.map((id) => deposit(system, id, 4)));
    const second = messagesOf(
      await fetch(url, { headers: { ...sse, "last-event-id": part1.at(-1)!.position } }),
    );
    const part2 = await second.take(27 - 12 + 9);
    await second.cancel();
    const all = [...part1, ...part2];
    // the shards' pages interleave as they were read: compare as sets, and per actor in order
    const expected = (await stored(system)).map((s) => s.key);
    assert.equal(new Set(keys(all)).size, all.length, "none twice");
    assert.deepEqual(keys(all).sort(), expected.sort(), "none lost");
    for (const id of ids) {
      const own = keys(all).filter((k) => k.startsWith(`${id}:`));
      assert.deepEqual(own, [1, 2, 3, 4].map((i) => `${id}:${i}`), `${id} in seq order`);
    }
    // a position of the memory journal's single shard is refused here
    const wrong = await fetch(`${url}?after=f1.3`, { headers: sse });
    assert.equal(wrong.status, 400);
    await wrong.body?.cancel();
  } finally {
    await served.close();
    await system.close();
    await journal.close();
    await Deno.remove(dir, { recursive: true });
  }
});
