import assert from "node:assert/strict";
import {
  ActorError,
  createSystem,
  defineActor,
  inProcessMesh,
  json,
  type MeshConnection,
  msgpack,
} from "../mod.ts";
import { Account, Counter } from "./fixtures.ts";
import { decodeReply, H } from "../src/mesh/wire.ts";
import { codecFor } from "../src/codec/mod.ts";

const envelope = (handler: string, o: { type?: string; timeout?: string; ct?: string } = {}) => ({
  [H.envelope]: `ask;${o.type ?? "account"};alice;${handler};${o.timeout ?? "1000"};${o.ct ?? ""}`,
});
const validHeaders = (handler: string) => envelope(handler);

/** A raw request's error reply: its `tr-status` header and the code and message it carries. */
async function rawError(
  conn: MeshConnection,
  subject: string,
  data: Uint8Array,
  headers: Record<string, string>,
): Promise<{ status: unknown; code: string; message: string }> {
  const reply = await conn.request(subject, data, { headers, timeout: 1000 });
  const status = reply.headers[H.status];
  const w = msgpack.decode(reply.data) as { code: string; message: string };
  return { status, code: w.code, message: w.message };
}

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
    const subject = "troupe.n.n1";
    const codeOf = async (data: Uint8Array, headers: Record<string, string>) => {
      const reply = await raw.request(subject, data, { headers, timeout: 1000 });
      return (msgpack.decode(reply.data) as { code: string }).code;
    };
    // garbage body
    assert.equal(
      await codeOf(new Uint8Array([0xc1, 0xff, 0x00]), validHeaders("deposit")),
      "bad_payload",
    );
    // truncated msgpack
    assert.equal(
      await codeOf(new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff]), validHeaders("deposit")),
      "bad_payload",
    );
    // missing headers
    assert.equal(await codeOf(msgpack.encode(1), {}), "bad_payload");
    // bad timeout
    assert.equal(
      await codeOf(msgpack.encode(1), envelope("deposit", { timeout: "x" })),
      "bad_payload",
    );
    // unknown content type
    assert.equal(
      await codeOf(msgpack.encode(1), envelope("deposit", { ct: "text%2Fx-nope" })),
      "bad_payload",
    );
    // unknown handler and type
    assert.equal(await codeOf(msgpack.encode(1), validHeaders("nope")), "unknown_handler");
    assert.equal(
      await codeOf(msgpack.encode(1), envelope("deposit", { type: "ghost" })),
      "unknown_actor_type",
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
    assert.equal(await codeOf(evil, validHeaders("deposit")), "bad_payload");
    assert.equal(({} as Record<string, unknown>).x, undefined);
    // oversize body: a valid MessagePack string of 2 MiB, so only the size check can refuse it
    const big = msgpack.encode("x".repeat(2 * 1024 * 1024));
    const oversize = await rawError(raw, subject, big, validHeaders("deposit"));
    assert.deepEqual(oversize, {
      status: "error",
      code: "bad_payload",
      message:
        `Payload of account.deposit (${big.byteLength} bytes) exceeds the limit of 1048576 bytes`,
    });
    // a message without reply subject is dropped quietly
    raw.publish(subject, new Uint8Array([1, 2, 3]), { headers: validHeaders("deposit") });
    // and the node still works, over the wire and locally
    const ok = await raw.request(subject, msgpack.encode(5), {
      headers: validHeaders("deposit"),
      timeout: 1000,
    });
    assert.equal(msgpack.decode(ok.data), 5);
    assert.equal(await system.ref(Account, "alice").ask("deposit", 1), 6);
  } finally {
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
    const subject = "troupe.n.host";
    const headers = envelope("echo", { type: "counter" });
    const data = msgpack.encode(big);
    assert.deepEqual(await rawError(raw, subject, data, headers), {
      status: "error",
      code: "bad_payload",
      message: `Payload of counter.echo (${data.byteLength} bytes) exceeds the limit of 1024 bytes`,
    });
    // The host stays up: the same request, small, is answered, raw and through a ref.
    const ok = await raw.request(subject, msgpack.encode("small"), { headers, timeout: 1000 });
    assert.equal(ok.headers[H.status], undefined);
    assert.equal(msgpack.decode(ok.data), "small");
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
      const reply = {
        subject: "_INBOX.x",
        headers: { [H.status]: "error", [H.contentType]: codec.contentType },
        data: codec.encode({ code, message: `Failed with ${code}` }),
      };
      assert.throws(
        () => decodeReply(reply, codecFor),
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
