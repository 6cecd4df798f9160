import assert from "node:assert/strict";
import { rejectsBadPayload as rejects } from "../util/_testing.ts";
import { checkPayloadSize, codecFor, DEFAULT_MAX_PAYLOAD, json, msgpack } from "./mod.ts";
import { ActorError, fromWireError, toWireError } from "../errors.ts";

Deno.test("codecFor() finds the built-in codecs, ignoring parameters and case", () => {
  assert.equal(codecFor("application/msgpack"), msgpack);
  assert.equal(codecFor("application/x-msgpack"), msgpack);
  assert.equal(codecFor("application/vnd.msgpack"), msgpack);
  assert.equal(codecFor("application/json; charset=utf-8"), json);
  assert.equal(codecFor(" Application/JSON "), json);
  assert.equal(codecFor("APPLICATION/MSGPACK ; q=1"), msgpack);
  assert.equal(codecFor("text/plain"), undefined);
  assert.equal(codecFor(""), undefined);
  // Lookups go through a Map: names of Object.prototype properties find nothing.
  assert.equal(codecFor("constructor"), undefined);
  assert.equal(codecFor("__proto__"), undefined);
});

Deno.test("checkPayloadSize() rejects payloads over the limit with a message giving both sizes", () => {
  checkPayloadSize(DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PAYLOAD);
  assert.equal(DEFAULT_MAX_PAYLOAD, 1_048_576);
  rejects(
    () => checkPayloadSize(2_000_000, DEFAULT_MAX_PAYLOAD),
    /^Payload of 2000000 bytes exceeds the limit of 1048576 bytes$/,
  );
  rejects(() => checkPayloadSize(11, 10, "Reply to account/alice.deposit"), /^Reply to account/);
});

Deno.test("both codecs word their errors alike and turn a throwing toJSON() into bad_payload", () => {
  const formats = [[msgpack, "MessagePack"], [json, "JSON"]] as const;
  for (const [codec, format] of formats) {
    rejects(() => codec.encode(/x/), new RegExp(`^Cannot encode a RegExp as ${format}$`));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    rejects(() => codec.encode(cyclic), new RegExp(`^Cannot encode a cyclic value as ${format}$`));
    const Anonymous = class extends RegExp {};
    Object.defineProperty(Anonymous, "name", { value: "" });
    rejects(
      () => codec.encode(new Anonymous("x")),
      new RegExp(`^Cannot encode this object as ${format}$`),
    );
    const boom = new Error("boom");
    const err = rejects(
      () =>
        codec.encode({
          x: new (class {
            toJSON() {
              throw boom;
            }
          })(),
        }),
      new RegExp(`^Cannot encode a value as ${format}: Error: boom$`),
    );
    assert.equal(err.cause, boom);
    rejects(
      () => codec.decode(new Uint8Array([0xc1])),
      new RegExp(`^Cannot decode a ${format} payload: `),
    );
  }
});

// Names that an object literal would find on Object.prototype.
const PROTOTYPE_NAMES = [
  "constructor",
  "toString",
  "__proto__",
  "hasOwnProperty",
  "valueOf",
  "isPrototypeOf",
  "__defineGetter__",
];

Deno.test("an error with a prototype-named code crosses both codecs and comes back as an ActorError", () => {
  for (const codec of [msgpack, json]) {
    for (const code of PROTOTYPE_NAMES) {
      const sent = new ActorError(`Failed with ${code}`, { code, data: { list: [1, 2n] } });
      const w = codec.decode(codec.encode(toWireError(sent))) as {
        code: string;
        message: string;
        data?: unknown;
      };
      const err = fromWireError(w);
      assert.ok(err instanceof ActorError, `${codec.contentType}, code "${code}"`);
      assert.equal(err.code, code);
      assert.equal(err.message, `Failed with ${code}`);
      assert.deepEqual(err.data, { list: [1, 2n] });
    }
  }
});
