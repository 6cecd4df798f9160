/**
 * Identities and access rules, as callers see them: tokens verified by the node that runs the
 * handler (locally and across nodes), per-handler and system-wide rules, and the refusals a
 * hostile caller must get, with nothing activated and nothing written.
 */
import assert from "node:assert/strict";
import { rawBody } from "./_wire.ts";
import { Status } from "../src/mesh/wire.ts";
import { base64url, exportJWK, generateKeyPair, SignJWT } from "jose";
import { ActorError, createSystem, inProcessMesh, memoryJournal, type System } from "../mod.ts";
import { startSystems, virtualClock } from "../adapters/testing/mod.ts";
import { waitFor } from "./helpers.ts";
import {
  AUDIENCE,
  ISSUER,
  issuer,
  Plain,
  Safe,
  safeSeen,
  seen,
  Vault,
  Who,
} from "./auth_fixtures.ts";

function code(err: unknown): string {
  return err instanceof ActorError ? err.code : `not an ActorError: ${err}`;
}

async function refused(p: Promise<unknown>, expected: string): Promise<void> {
  await assert.rejects(p, (err) => {
    assert.equal(code(err), expected, String(err));
    return true;
  });
}

async function events(system: System, id: string): Promise<number> {
  let n = 0;
  for await (const _ of system.history(Vault, id)) n++;
  return n;
}

Deno.test("access rules: public, authenticated, roles, predicates, deny; ctx.caller is the verified caller", async () => {
  const idp = await issuer();
  const system = await createSystem({
    actors: [Vault, Plain],
    auth: idp.auth,
  });
  try {
    const alice = await idp.sign({ sub: "alice" });
    const teller = await idp.sign({ sub: "tom", roles: ["teller"] });
    const vault = system.ref(Vault, "alice");
    // public: no token needed
    assert.equal(await vault.ask("balance"), 0);
    // authenticated: a token is needed
    await refused(vault.ask("deposit", 10), "unauthorized");
    assert.equal(await vault.ask("deposit", 10, { token: alice }), 10);
    // a ref carries its token; a call's own token wins
    const asAlice = system.ref(Vault, "alice", { token: alice });
    assert.deepEqual(await asAlice.ask("whoami"), { sub: "alice", roles: [] });
    assert.deepEqual(await asAlice.ask("whoami", undefined, { token: teller }), {
      sub: "tom",
      roles: ["teller"],
    });
    // any entry of an array may allow: the owner (predicate) or a teller (role)
    assert.equal(await asAlice.ask("withdraw", 1), 9);
    assert.equal(await system.ref(Vault, "alice").ask("withdraw", 1, { token: teller }), 8);
    const bob = await idp.sign({ sub: "bob" });
    await refused(system.ref(Vault, "alice").ask("withdraw", 1, { token: bob }), "forbidden");
    // unlisted handlers fall to "*": deny
    await refused(asAlice.ask("secret"), "forbidden");
    await refused(system.ref(Vault, "alice").ask("secret"), "unauthorized");
    // a type without access: authenticated for every handler
    await refused(system.ref(Plain, "p").ask("ping"), "unauthorized");
    assert.equal(await system.ref(Plain, "p", { token: bob }).ask("ping"), "pong");
    // explain() names the rule that decided
    assert.deepEqual(await system.explain(Vault, "withdraw", { id: "alice", token: bob }), {
      allowed: false,
      code: "forbidden",
      by: "access.withdraw",
    });
    assert.equal((await system.explain(Vault, "secret")).by, "access.*");
    assert.equal(
      (await system.explain(Plain, "ping", { token: bob })).by,
      "default: authenticated",
    );
  } finally {
    await system.close();
  }
});

Deno.test("calls made in a turn carry the original caller; a reminder runs as its scheduler", async () => {
  const idp = await issuer();
  const systems = await startSystems({
    actors: [Vault, Who],
    nodes: 2,
    system: {
      logger: "error",
      auth: {
        keys: [idp.jwk],
        algorithms: ["ES256"],
        issuer: ISSUER,
        audience: AUDIENCE,
        clusterSecret: "a shared secret of the test cluster, 32+ bytes",
      },
    },
  });
  try {
    const alice = await idp.sign({ sub: "alice" });
    const c = systems.client;
    // a → b whoami: b sees alice, whichever nodes run them
    assert.deepEqual(await c.ref(Vault, "a1", { token: alice }).ask("relay", "b1"), {
      sub: "alice",
      roles: [],
    });
    // the reminder's handler allows only the actor itself ("self"); it runs as alice, who
    // scheduled it, whichever node fires it (a token the cluster signed carries her identity)
    seen.reminded.length = 0;
    assert.equal(await c.ref(Vault, "r1", { token: alice }).ask("remind"), "scheduled");
    const until = performance.now() + 5000;
    while (seen.reminded.length === 0 && performance.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(seen.reminded, ["alice"]);
    // and nobody else may call it: not alice from outside, not a stranger
    await assert.rejects(c.ref(Vault, "r1", { token: alice }).ask("reminded"), {
      code: "forbidden",
    });
  } finally {
    await systems.close();
  }
});

Deno.test("idempotency keys are scoped by caller: one caller never gets another's stored reply", async () => {
  const idp = await issuer();
  const system = await createSystem({
    actors: [Vault],
    auth: idp.auth,
  });
  try {
    const alice = await idp.sign({ sub: "alice" });
    const mallory = await idp.sign({ sub: "mallory" });
    const v = system.ref(Vault, "shared");
    assert.equal(await v.ask("deposit", 5, { token: alice, idempotencyKey: "k" }), 5);
    assert.equal(await v.ask("deposit", 5, { token: alice, idempotencyKey: "k" }), 5, "replayed");
    // the same key from another caller is another message: applied, not alice's reply
    assert.equal(await v.ask("deposit", 7, { token: mallory, idempotencyKey: "k" }), 12);
    assert.equal(await events(system, "shared"), 2);
  } finally {
    await system.close();
  }
});

Deno.test("a forged token or caller published straight onto the mesh is refused, nothing activated", async () => {
  const idp = await issuer();
  const mesh = inProcessMesh();
  const systems = await startSystems({
    actors: [Vault],
    nodes: 1,
    mesh,
    system: {
      logger: "error",
      auth: idp.auth,
    },
  });
  const raw = await mesh.connect({ node: "intruder" });
  try {
    seen.activations = 0;
    const node = systems.nodes[0]!.node;
    const payload = new Uint8Array([0x05]); // msgpack 5
    for (
      const token of [
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.", // alg none
        undefined, // no token, and a made-up caller header below
      ]
    ) {
      const body = rawBody(
        { type: "vault", id: "forged", handler: "deposit", ...(token ? { token } : {}) },
        payload,
      );
      const reply = await raw.request(`${mesh.prefix}.n.${node}.vault`, body, {
        headers: { caller: "admin", "x-troupe-caller": '{"sub":"admin","roles":["teller"]}' },
        timeout: 5000,
      });
      assert.equal(reply.data[0], Status.error);
      assert.match(new TextDecoder().decode(reply.data), /unauthorized/);
    }
    assert.equal(seen.activations, 0, "nothing was activated");
    assert.equal(await events(systems.client, "forged"), 0, "nothing was written");
  } finally {
    await raw.close();
    await systems.close();
  }
});

Deno.test("a node without auth refuses to host a type that declares access", async () => {
  await assert.rejects(createSystem({ actors: [Vault] }), TypeError);
});

Deno.test("hostile tokens are refused with unauthorized; nothing is activated or written", async () => {
  const idp = await issuer("good");
  const rsa = await generateKeyPair("RS256", { extractable: true });
  const rsaJwk = { ...(await exportJWK(rsa.publicKey)), kid: "rsa", alg: "RS256" };
  const system = await createSystem({
    actors: [Vault],
    auth: {
      keys: [idp.jwk, rsaJwk],
      algorithms: ["ES256", "RS256"],
      issuer: ISSUER,
      audience: AUDIENCE,
      clockTolerance: 5,
    },
  });
  const now = Math.floor(Date.now() / 1000);
  const encode = (o: object) => base64url.encode(JSON.stringify(o));
  try {
    const good = await idp.sign({ sub: "x" });
    const [h, p, s] = good.split(".");
    const other = await issuer("good"); // same kid, another key
    const cases: [string, string][] = [
      [
        "alg none",
        `${encode({ alg: "none", typ: "JWT" })}.${
          encode({ sub: "x", iss: ISSUER, aud: AUDIENCE, exp: now + 600 })
        }.`,
      ],
      [
        "HS256 signed with the RSA public key",
        await new SignJWT({ sub: "x" }).setProtectedHeader({ alg: "HS256", kid: "rsa" })
          .setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime(now + 600)
          .sign(new TextEncoder().encode(JSON.stringify(rsaJwk))),
      ],
      ["an embedded jwk header", await idp.sign({ sub: "x" }, { header: { jwk: other.jwk } })],
      ["a jku header", await idp.sign({ sub: "x" }, { header: { jku: "http://127.0.0.1:9/k" } })],
      ["an x5u header", await idp.sign({ sub: "x" }, { header: { x5u: "http://127.0.0.1:9/c" } })],
      ["signed by another key with the same kid", await other.sign({ sub: "x" })],
      ["expired", await idp.sign({ sub: "x" }, { exp: now - 60 })],
      ["nbf in the future", await idp.sign({ sub: "x" }, { nbf: now + 600 })],
      ["no exp", await idp.sign({ sub: "x" }, { exp: null })],
      ["wrong iss", await idp.sign({ sub: "x" }, { iss: "https://evil.test/" })],
      ["wrong aud", await idp.sign({ sub: "x" }, { aud: "someone-else" })],
      [
        "tampered payload",
        `${h}.${encode({ sub: "admin", iss: ISSUER, aud: AUDIENCE, exp: now + 600 })}.${s}`,
      ],
      ["tampered signature", `${h}.${p}.${s!.slice(0, -4)}AAAA`],
      ["oversized", await idp.sign({ sub: "x", pad: "y".repeat(9000) })],
      ["garbage", "not.a.jwt"],
    ];
    seen.activations = 0;
    for (const [what, token] of cases) {
      const v = system.ref(Vault, `hostile-${what}`, { token });
      await refused(v.ask("deposit", 1), "unauthorized").catch((err) => {
        throw new Error(`${what}: ${err.message}`);
      });
    }
    assert.equal(seen.activations, 0, "nothing was activated");
    for (const [what] of cases) assert.equal(await events(system, `hostile-${what}`), 0);
    // the good token works (the refusals did not break anything)
    assert.equal(await system.ref(Vault, "ok", { token: good }).ask("deposit", 1), 1);
  } finally {
    await system.close();
  }
});

Deno.test("a remote JWKS: unknown kids cost at most one fetch per cooldown, keys rotate, JWKS down fails closed", async () => {
  let keys = [(await issuer("k1")).jwk];
  const first = await issuer("k1");
  keys = [first.jwk];
  let fetches = 0;
  let up = true;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    fetches++;
    if (!up) return new Response("down", { status: 503 });
    return Response.json({ keys });
  });
  const system = await createSystem({
    actors: [Vault],
    auth: {
      jwks: `http://127.0.0.1:${server.addr.port}/jwks.json`,
      algorithms: ["ES256"],
      issuer: ISSUER,
      audience: AUDIENCE,
      jwksCooldown: 1000,
    },
  });
  try {
    assert.equal(
      await system.ref(Vault, "j", { token: await first.sign({ sub: "a" }) }).ask("deposit", 1),
      1,
    );
    const afterFirst = fetches;
    // a flood of tokens with unknown kids: refused, and the JWKS is fetched at most once more
    const stranger = await issuer("unknown");
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const t = await stranger.sign({ sub: `s${i}` });
      await refused(system.ref(Vault, `u${i}`, { token: t }).ask("deposit", 1), "unauthorized");
    }));
    assert.ok(fetches - afterFirst <= 1, `${fetches - afterFirst} fetches for 50 unknown kids`);
    // rotation: a new key is published; after the cooldown its tokens verify, no restart
    const second = await issuer("k2");
    keys = [first.jwk, second.jwk];
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(
      await system.ref(Vault, "j", { token: await second.sign({ sub: "b" }) }).ask("deposit", 1),
      2,
    );
    // JWKS down: tokens with a kid it would have to fetch are refused (fail closed)
    up = false;
    const third = await issuer("k3");
    await new Promise((r) => setTimeout(r, 1100));
    await refused(
      system.ref(Vault, "j", { token: await third.sign({ sub: "c" }) }).ask("deposit", 1),
      "unauthorized",
    );
  } finally {
    await system.close();
    await server.shutdown();
  }
});

Deno.test("a stream ends with unauthorized when its caller's token expires", async () => {
  const idp = await issuer();
  const clock = virtualClock(); // starts at the real time now: the token is valid
  const system = await createSystem({
    actors: [Vault],
    auth: idp.auth,
    clock,
  });
  try {
    const exp = Math.floor(clock.now() / 1000) + 2; // 1 to 2 s from now
    const token = await idp.sign({ sub: "s" }, { exp });
    let items = 0;
    let expired: Promise<void> | undefined;
    await refused(
      (async () => {
        for await (const _ of system.ref(Vault, "f", { token }).stream("feed")) {
          // three items while the token is valid, then its expiry passes on the node's clock
          if (++items === 3) expired = clock.advance(exp * 1000 - clock.now());
        }
      })(),
      "unauthorized",
    );
    await expired;
    assert.ok(items >= 3, "items flowed while the token was valid");
  } finally {
    await system.close();
  }
});

Deno.test("a stream whose token is valid for months keeps flowing (no timer overflow)", async () => {
  const idp = await issuer();
  const system = await createSystem({
    actors: [Vault],
    auth: idp.auth,
  });
  try {
    // 30 days: past setTimeout's 2^31 - 1 ms (24.8 days), which fired at once when exceeded.
    const exp = Math.floor(Date.now() / 1000) + 30 * 24 * 3600;
    const token = await idp.sign({ sub: "s" }, { exp });
    const items: number[] = [];
    for await (const i of system.ref(Vault, "long", { token }).stream("feed")) {
      items.push(i as number);
      if (items.length === 5) break;
    }
    assert.deepEqual(items, [0, 1, 2, 3, 4]);
  } finally {
    await system.close();
  }
});

Deno.test("topic rules: who may publish and subscribe with a token", async () => {
  const idp = await issuer();
  const system = await createSystem({
    auth: {
      keys: [idp.jwk],
      algorithms: ["ES256"],
      issuer: ISSUER,
      audience: AUDIENCE,
      topics: [{ topic: "orders.>", publish: "role:shop", subscribe: "authenticated" }],
    },
  });
  try {
    const shop = await idp.sign({ sub: "shop", roles: ["shop"] });
    const user = await idp.sign({ sub: "u" });
    const got: unknown[] = [];
    const sub = system.subscribe("orders.*", (p) => void got.push(p), { token: user });
    // Nothing is delivered before the subscriber's token is verified: wait until a probe is.
    await waitFor(
      async () => {
        await system.publish("orders.probe", "probe", { token: shop });
        return got.includes("probe");
      },
      5_000,
      "the subscription to be allowed",
    );
    got.length = 0;
    await system.publish("orders.created", 1, { token: shop });
    await refused(system.publish("orders.created", 2, { token: user }), "forbidden");
    await refused(system.publish("payments.done", 3, { token: shop }), "forbidden");
    await refused(system.publish("orders.created", 4, { token: "junk" }), "unauthorized");
    await system.publish("orders.created", 5); // the node's own code: no token, trusted
    await waitFor(() => got.filter((p) => p !== "probe").length >= 2, 2_000, "two messages");
    assert.deepEqual(got.filter((p) => p !== "probe"), [1, 5]);
    sub.unsubscribe();
  } finally {
    await system.close();
  }
});

Deno.test("an anonymous caller never gets a signed-in caller's stored reply, whatever key it names", async () => {
  const idp = await issuer();
  const system = await createSystem({
    actors: [Vault],
    logger: "error",
    auth: idp.auth,
  });
  try {
    const alice = await idp.sign({ sub: "alice" });
    const v = system.ref(Vault, "pin");
    assert.equal(await v.ask("deposit", 5, { token: alice, idempotencyKey: "k1" }), 5);
    assert.equal(await v.ask("deposit", 10, { token: alice }), 15);
    // An anonymous call to a public handler, naming alice's key in every scoped form a caller
    // could guess (the old `caller:<len>:<sub>:<key>` and today's), gets its own answer.
    for (const key of ["k1", "caller:5:alice:k1", "u:5:alice:k1", "a:k1"]) {
      assert.equal(await v.ask("balance", undefined, { idempotencyKey: key }), 15, key);
    }
    // alice's own retry still gets her stored reply
    assert.equal(await v.ask("deposit", 5, { token: alice, idempotencyKey: "k1" }), 5);
    // a key over 256 bytes is refused before anything runs
    await assert.rejects(
      v.ask("balance", undefined, { idempotencyKey: "k".repeat(257) }),
      { code: "bad_payload" },
    );
  } finally {
    await system.close();
  }
});

Deno.test("a reminder never has more rights than whoever scheduled it: an anonymous one cannot reach an admin handler", async () => {
  const idp = await issuer();
  const journal = memoryJournal();
  const systems = await startSystems({
    actors: [Safe],
    nodes: 2,
    journal,
    system: {
      logger: "silent",
      auth: {
        keys: [idp.jwk],
        algorithms: ["ES256"],
        issuer: ISSUER,
        audience: AUDIENCE,
        clusterSecret: "a shared secret of the test cluster, 32+ bytes",
      },
    },
  });
  try {
    const c = systems.client;
    safeSeen.touched.length = 0;
    // an anonymous call to a public handler schedules a wipe (role:admin) and a touch (self)
    assert.equal(await c.ref(Safe, "anon").ask("poke"), "scheduled");
    const settled = async () => {
      const until = performance.now() + 10_000;
      while (performance.now() < until) {
        if (await journal.nextReminder() === undefined) return;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.fail("the reminders were not settled");
    };
    await settled();
    assert.equal(await c.ref(Safe, "anon").ask("peek"), false, "the wipe never ran");
    assert.deepEqual(safeSeen.touched, [undefined], "self ran, as nobody");
    // an admin's reminder keeps the admin's rights
    const admin = await idp.sign({ sub: "ada", roles: ["admin"] });
    assert.equal(await c.ref(Safe, "adm", { token: admin }).ask("poke"), "scheduled");
    await settled();
    assert.equal(await c.ref(Safe, "adm").ask("peek"), true, "the admin's wipe ran");
    assert.deepEqual(safeSeen.touched, [undefined, "ada"]);
    // "self" is not for outsiders, signed in or not
    await assert.rejects(c.ref(Safe, "adm", { token: admin }).ask("touch"), { code: "forbidden" });
    await assert.rejects(c.ref(Safe, "adm").ask("touch"), { code: "unauthorized" });
  } finally {
    await systems.close();
    await journal.close();
  }
});
