import assert from "node:assert/strict";
import { ActorError, createSystem, defineActor, inProcessMesh } from "../mod.ts";
import { json, msgpack } from "../spi.ts";
import { Account, Counter } from "./fixtures.ts";
import { decodeReply, Status } from "../src/mesh/wire.ts";
import { codeOf, rawBody, rawRequest } from "./_wire.ts";
import { waitFor } from "./helpers.ts";

Deno.test("malformed messages on Troupe subjects get a clear error and the node keeps running", async () => {
  // The mesh carries 4 MiB, so an oversize body reaches the node (default limit 1 MiB) and the
  // node, not the sender's connection, is what refuses it.
  const mesh = inProcessMesh({ maxPayload: 4 * 1024 * 1024 });
  const system = await createSystem({
    actors: [Account, Counter],
    mesh,
    node: "n1",
    logger: "silent",
  });
  const raw = await mesh.connect({ node: "raw" });
  try {
    const subject = "troupe.n.n1.account";
    const deposit = (payload: Uint8Array) =>
      rawBody({ type: "account", id: "alice", handler: "deposit" }, payload);
    const code = async (body: Uint8Array) => codeOf(await rawRequest(raw, subject, body, 1000));
    // garbage payload
    assert.equal(await code(deposit(new Uint8Array([0xc1, 0xff, 0x00]))), "bad_payload");
    // truncated msgpack
    assert.equal(
      await code(deposit(new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff]))),
      "bad_payload",
    );
    // no envelope at all, an unknown version, an envelope cut short
    assert.equal(await code(msgpack.encode(1)), "bad_payload");
    assert.equal(await code(new Uint8Array(0)), "bad_payload");
    const good = deposit(msgpack.encode(1));
    assert.equal(await code(Uint8Array.of(9, ...good.subarray(1))), "bad_payload");
    assert.equal(await code(good.subarray(0, 7)), "bad_payload");
    // a zero timeout (the varint after the four fixed bytes)
    const zero = good.slice();
    zero[4] = 0;
    assert.equal(await code(zero), "bad_payload");
    // unknown content type
    assert.equal(
      await code(
        rawBody(
          { type: "account", id: "alice", handler: "deposit", contentType: "text/x-nope" },
          msgpack.encode(1),
        ),
      ),
      "bad_payload",
    );
    // unknown handler
    assert.equal(
      await code(rawBody({ type: "account", id: "alice", handler: "nope" }, msgpack.encode(1))),
      "unknown_handler",
    );
    // prototype pollution attempt
    const evil = new Uint8Array([
      0x81,
      0xa9,
      ...new TextEncoder().encode("__proto__"),
      0x81,
      0xa1,
      0x78,
      0x01,
    ]);
    assert.equal(await code(deposit(evil)), "bad_payload");
    assert.equal(({} as Record<string, unknown>).x, undefined);
    // oversize body: a valid MessagePack string of 2 MiB, so only the size check can refuse it
    const big = msgpack.encode("x".repeat(2 * 1024 * 1024));
    const oversize = await rawRequest(raw, subject, deposit(big), 1000);
    assert.deepEqual(oversize, {
      status: "error",
      value: {
        code: "bad_payload",
        message:
          `Payload of account.deposit (${big.byteLength} bytes) exceeds the limit of 1048576 bytes`,
      },
    });
    // a message without reply subject is dropped quietly
    raw.publish(subject, deposit(new Uint8Array([1, 2, 3])));
    // and the node still works, over the wire and locally
    assert.deepEqual(await rawRequest(raw, subject, deposit(msgpack.encode(5)), 1000), {
      status: "ok",
      value: 5,
    });
    assert.equal(await system.ref(Account, "alice").ask("deposit", 1), 6);
  } finally {
    await raw.close();
    await system.close();
  }
});

const Admin = defineActor({
  name: "admin",
  initialState: () => ({ wiped: false }),
  handlers: {
    wipe(ctx) {
      ctx.state = { wiped: true };
      return "wiped";
    },
    wiped: (ctx) => ctx.state.wiped,
  },
});

Deno.test("an envelope naming another type than its subject's runs nothing and activates nothing", async () => {
  const mesh = inProcessMesh();
  const system = await createSystem({ actors: [Counter, Admin], mesh, node: "n1" });
  const raw = await mesh.connect({ node: "raw" });
  const activated: string[] = [];
  const watch = system.directory.watch()[Symbol.asyncIterator]();
  const seen = (async () => {
    for (;;) {
      const e = await watch.next();
      if (e.done) return;
      if (e.value.type === "activated") activated.push(`${e.value.actor.type}/${e.value.actor.id}`);
    }
  })();
  try {
    // A client allowed to publish on the counter type's subject names admin/root.wipe.
    const forged = rawBody({ type: "admin", id: "root", handler: "wipe" });
    const reply = await rawRequest(raw, "troupe.n.n1.counter", forged, 1000);
    assert.equal(codeOf(reply), "bad_payload");
    assert.match(
      (reply.value as { message: string }).message,
      /arrived on the subject of "counter"/,
    );
    // the real counter subject still works, and the admin actor never ran nor activated
    const ok = rawBody({ type: "counter", id: "c1", handler: "echo" }, msgpack.encode("hi"));
    assert.deepEqual(await rawRequest(raw, "troupe.n.n1.counter", ok, 1000), {
      status: "ok",
      value: "hi",
    });
    assert.equal(await system.directory.locate(Admin, "root"), undefined);
    await waitFor(() => activated.length > 0, 2_000, "the counter's activation event");
    assert.deepEqual(activated, ["counter/c1"]);
    assert.equal(await system.ref(Admin, "root").ask("wiped"), false);
  } finally {
    await watch.return?.();
    await seen;
    await raw.close();
    await system.close();
  }
});

Deno.test("an oversize payload is refused before it is sent, and by the node it reaches", async () => {
  const mesh = inProcessMesh();
  const host = await createSystem({
    actors: [Counter],
    mesh,
    node: "host",
    maxPayload: 1024,
    logger: "silent",
  });
  const client = await createSystem({ actors: [], mesh, node: "client", maxPayload: 1024 });
  const raw = await mesh.connect({ node: "raw" });
  try {
    const big = "x".repeat(2048);
    // The sending system refuses it itself, for a local actor and for a remote one.
    await assert.rejects(host.ref(Counter, "c").ask("echo", big), { code: "bad_payload" });
    await assert.rejects(client.ref(Counter, "c").ask("echo", big), { code: "bad_payload" });
    await assert.rejects(client.ref(Counter, "c").ask("echo", { a: [big] }), {
      code: "bad_payload",
    });
    // Sent straight onto the mesh (as another implementation or a bad client might), it reaches
    // the host, which answers bad_payload.
    const subject = "troupe.n.host.counter";
    const data = msgpack.encode(big);
    const echo = (payload: Uint8Array) =>
      rawBody({ type: "counter", id: "c", handler: "echo" }, payload);
    assert.deepEqual(await rawRequest(raw, subject, echo(data), 1000), {
      status: "error",
      value: {
        code: "bad_payload",
        message:
          `Payload of counter.echo (${data.byteLength} bytes) exceeds the limit of 1024 bytes`,
      },
    });
    // The host stays up: the same request, small, is answered, raw and through a ref.
    assert.deepEqual(await rawRequest(raw, subject, echo(msgpack.encode("small")), 1000), {
      status: "ok",
      value: "small",
    });
    assert.equal(await client.ref(Counter, "c").ask("echo", "small"), "small");
  } finally {
    await raw.close();
    await client.close();
    await host.close();
  }
});

Deno.test("rich values (bigint, Date, Map, Set, bytes) cross the wire intact", async () => {
  const mesh = inProcessMesh();
  const host = await createSystem({ actors: [Counter], mesh });
  const client = await createSystem({ actors: [], mesh });
  try {
    const v = {
      big: 2n ** 70n,
      when: new Date(1_700_000_000_000),
      map: new Map<unknown, unknown>([[1, "a"], ["k", new Set([1, 2])]]),
      bytes: new Uint8Array([1, 2, 3]),
      nothing: null,
      undef: undefined,
    };
    assert.deepEqual(await client.ref(Counter, "c").ask("echo", v), v);
  } finally {
    await client.close();
    await host.close();
  }
});

Deno.test("a node sending JSON talks to a node sending MessagePack: codec per message", async () => {
  const mesh = inProcessMesh();
  const host = await createSystem({ actors: [Counter, Account], mesh });
  const client = await createSystem({ actors: [], mesh, contentType: "application/json" });
  try {
    const v = { big: 12n, when: new Date(0), list: [1, "two", null], nested: { ok: true } };
    assert.deepEqual(await client.ref(Counter, "j").ask("echo", v), v);
    assert.equal(await client.ref(Account, "j").ask("deposit", 5), 5);
    await assert.rejects(client.ref(Account, "j").ask("withdraw", 50), { code: "insufficient" });
  } finally {
    await client.close();
    await host.close();
  }
});

// Codes a lookup in an object literal would find on Object.prototype.
const PROTOTYPE_NAMES = ["constructor", "toString", "__proto__", "hasOwnProperty"];

Deno.test("an error reply whose code names an Object.prototype property gives an ActorError", () => {
  for (const codec of [msgpack, json]) {
    for (const code of PROTOTYPE_NAMES) {
      const body = codec.encode({ code, message: `Failed with ${code}` });
      const reply = Uint8Array.of(Status.error, ...body);
      assert.throws(
        () => decodeReply(reply, codec),
        (err: unknown) => {
          assert.ok(err instanceof ActorError, `${codec.contentType} "${code}": ${String(err)}`);
          assert.equal(err.code, code);
          assert.equal(err.message, `Failed with ${code}`);
          return true;
        },
      );
    }
  }
});

const Fails = defineActor({
  name: "fails",
  initialState: () => ({}),
  handlers: {
    fail(_ctx, code: string) {
      throw new ActorError(`Failed with ${code}`, { code, data: { code } });
    },
  },
});

Deno.test("a handler's error with a code like constructor or __proto__ reaches a remote caller intact", async () => {
  const mesh = inProcessMesh();
  const host = await createSystem({ actors: [Fails], mesh, logger: "silent" });
  const client = await createSystem({ actors: [], mesh, logger: "silent" });
  try {
    for (const code of PROTOTYPE_NAMES) {
      await assert.rejects(client.ref(Fails, "f").ask("fail", code), (err: unknown) => {
        assert.ok(err instanceof ActorError, `"${code}": ${String(err)}`);
        assert.equal(err.code, code);
        assert.equal(err.message, `Failed with ${code}`);
        assert.deepEqual(err.data, { code });
        return true;
      });
    }
  } finally {
    await client.close();
    await host.close();
  }
});
