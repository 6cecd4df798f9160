/** The typed fetch client against a gateway over real HTTP on loopback. */
import assert from "node:assert/strict";
import {
  ActorError,
  ForbiddenError,
  RateLimitedError,
  TimeoutError,
  UnknownHandlerError,
} from "../mod.ts";
import { client } from "../adapters/hono/mod.ts";
import { openTicks, type Resize, startGateway, Wallet } from "./gateway_fixtures.ts";
import { waitFor } from "./helpers.ts";

type Api = { wallet: typeof Wallet; resize: typeof Resize };

Deno.test("client: api.wallet(id).deposit(5) resolves to the typed reply", async () => {
  await using g = await startGateway();
  const api = client<Api>(g.api);
  const balance: number = await api.wallet("alice").deposit(5);
  assert.equal(balance, 5);
  assert.equal(await api.wallet("alice").deposit(2), 7);
  assert.equal(await api.wallet("alice").balance(), 7);
  assert.equal(await api.resize().half(9), 4.5);
  // ids with any characters
  assert.equal(await api.wallet("a/b c?d").deposit(1), 1);
  // values JSON has no form for come back as themselves
  const v = { n: 2n ** 70n, at: new Date(5), m: new Map([[1, "x"]]), b: new Uint8Array([9]) };
  assert.deepEqual(await api.wallet("e").echo(v), v);
});

Deno.test("client: the types follow the definitions", () => {
  const api = client<Api>("http://127.0.0.1:9/api");
  const typed = () => {
    // @ts-expect-error deposit takes a number
    void api.wallet("a").deposit("5");
    // @ts-expect-error no such handler
    void api.wallet("a").nope();
    // @ts-expect-error no such actor type
    void api.account("a");
    // @ts-expect-error a streaming handler is iterated, not awaited as a number
    const n: number = api.wallet("a").statement(2);
    return n;
  };
  assert.equal(typeof typed, "function"); // compiled, not run
});

Deno.test("client: errors are ActorErrors with the gateway's code (Troupe's subclass where it has one)", async () => {
  await using g = await startGateway({ timeout: 100 });
  const api = client<Api>(g.api);
  await api.wallet("poor").deposit(1);
  await assert.rejects(api.wallet("poor").withdraw(5), (err) => {
    assert.ok(err instanceof ActorError);
    assert.equal(err.code, "insufficient");
    assert.deepEqual(err.data, { balance: 1 });
    return true;
  });
  await assert.rejects(api.wallet("s").slow(1_000), (err) => err instanceof TimeoutError);
  const hidden = client<{ wallet: typeof Wallet }>(g.api).wallet("x") as unknown as {
    hidden(): Promise<unknown>;
  };
  await assert.rejects(hidden.hidden(), (err) => err instanceof UnknownHandlerError);
});

Deno.test("client: a streaming handler is iterated over SSE; break cancels it on the actor", async () => {
  await using g = await startGateway();
  const api = client<Api>(g.api);
  await api.wallet("s").deposit(3);
  const lines = [];
  for await (const line of api.wallet("s").statement(2)) lines.push(line);
  assert.deepEqual(lines, [{ line: 0, balance: 3 }, { line: 1, balance: 3 }]);
  await assert.rejects(
    (async () => {
      for await (const _ of api.wallet("f").failing(1)) { /* the one item */ }
    })(),
    { code: "broken", message: "the statement broke" },
  );
  openTicks.now = 0;
  for (let i = 0; i < 10; i++) {
    let seen = 0;
    for await (const _ of api.wallet(`t${i % 3}`).ticks()) if (++seen === 3) break;
  }
  await waitFor(() => openTicks.now === 0, 5_000, "the actor streams to be cancelled");
});

Deno.test("client: tokens and idempotency keys travel as headers", async () => {
  const seen: Headers[] = [];
  const api = client<Api>("http://127.0.0.1:9/api", {
    token: () => "t0k",
    fetch: (_url, init) => {
      seen.push(new Headers(init?.headers));
      return Promise.resolve(
        new Response("1", { headers: { "content-type": "application/json" } }),
      );
    },
  });
  assert.equal(await api.wallet("a").deposit(1, { idempotencyKey: "k1" }), 1);
  assert.equal(await api.wallet("a").deposit(1, { token: "other" }), 1);
  assert.equal(seen[0]!.get("authorization"), "Bearer t0k");
  assert.equal(seen[0]!.get("idempotency-key"), "k1");
  assert.equal(seen[1]!.get("authorization"), "Bearer other");
});

Deno.test("client: every Troupe code comes back as its subclass (403 is a ForbiddenError)", async () => {
  await using g = await startGateway();
  const api = client<Api>(g.api);
  await assert.rejects(api.wallet("e").raise("forbidden"), (err) => {
    assert.ok(err instanceof ForbiddenError, String(err));
    assert.equal(err.code, "forbidden");
    return true;
  });
  await assert.rejects(api.wallet("e").raise("rate_limited"), RateLimitedError);
});

Deno.test("client: ids . and .. (and ~.) reach their own actor, not another route", async () => {
  await using g = await startGateway();
  const api = client<Api>(g.api);
  const ids = [".", "..", "~.", "~~..", "...", "a/..", "%2e"];
  for (const [i, id] of ids.entries()) assert.equal(await api.wallet(id).deposit(i + 1), i + 1);
  for (const [i, id] of ids.entries()) {
    assert.equal(await g.system.ref(Wallet, id).ask("balance"), i + 1, `id ${JSON.stringify(id)}`);
  }
});
