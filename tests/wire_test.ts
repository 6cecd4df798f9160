import assert from "node:assert/strict";
import { createSystem, inProcessMesh, msgpack } from "../mod.ts";
import { Account, Counter } from "./fixtures.ts";
import { H } from "../src/mesh/wire.ts";

const envelope = (handler: string, o: { type?: string; timeout?: string; ct?: string } = {}) => ({
  [H.envelope]: `ask;${o.type ?? "account"};alice;${handler};${o.timeout ?? "1000"};${o.ct ?? ""}`,
});
const validHeaders = (handler: string) => envelope(handler);

Deno.test("malformed messages on Troupe subjects get a clear error and the node keeps running", async () => {
  const mesh = inProcessMesh();
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
    // oversize (2 MiB) body
    const big = new Uint8Array(2 * 1024 * 1024);
    await assert.rejects(
      raw.request(subject, big, { headers: validHeaders("deposit"), timeout: 1000 }),
    );
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

Deno.test("an oversize payload is rejected with bad_payload, locally and across nodes", async () => {
  const mesh = inProcessMesh();
  const host = await createSystem({ actors: [Counter], mesh, maxPayload: 1024 });
  const client = await createSystem({ actors: [], mesh, maxPayload: 1024 });
  try {
    const big = "x".repeat(2048);
    await assert.rejects(host.ref(Counter, "c").ask("echo", big), { code: "bad_payload" });
    await assert.rejects(client.ref(Counter, "c").ask("echo", big), { code: "bad_payload" });
    await assert.rejects(client.ref(Counter, "c").ask("echo", { a: [big] }), {
      code: "bad_payload",
    });
    assert.equal(await client.ref(Counter, "c").ask("echo", "small"), "small");
  } finally {
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
