import assert from "node:assert/strict";
import { BadPayloadError } from "../errors.ts";
import {
  fromJsonText,
  fromJsonValue,
  json,
  jsonSyntaxError,
  toJsonText,
  toJsonTree,
} from "./json.ts";

Deno.test("fromJsonText(): the text half of the JSON codec, with the same refusals", () => {
  assert.equal(fromJsonText("1"), 1);
  assert.deepEqual(fromJsonText('{"a":[1,"x",null]}'), { a: [1, "x", null] });
  assert.deepEqual(fromJsonText('{"n":{"$bigint":"5"}}'), { n: 5n });
  // __proto__ as a key is refused, also when escaped (which a plain JSON.parse would take)
  assert.throws(() => fromJsonText('{"__proto__":1}'), BadPayloadError);
  assert.throws(() => fromJsonText('{"\\u005f_proto__":1}'), BadPayloadError);
  assert.throws(() => fromJsonText('{"\\u0024date":"x"}'), BadPayloadError); // escaped, still a tag
  // nesting: up to maxDepth, in short and long texts alike
  const nested = (d: number) => "[".repeat(d) + "]".repeat(d);
  assert.throws(() => fromJsonText(nested(3), 2), BadPayloadError);
  assert.deepEqual(fromJsonText(nested(2), 2), [[]]);
  assert.throws(() => fromJsonText(nested(65)), BadPayloadError);
  assert.throws(() => fromJsonText("{nope"), BadPayloadError);
  // the same as the codec on bytes
  for (const text of ["1", '"s"', '{"m":{"$map":[[1,2]]}}', nested(10)]) {
    assert.deepEqual(fromJsonText(text), json.decode(new TextEncoder().encode(text)));
  }
});

Deno.test("toJsonText(): the text json.encode writes as UTF-8", () => {
  for (const v of [1, "x", null, { a: 5n, d: new Date(0) }, [new Uint8Array([1])]]) {
    assert.equal(toJsonText(v), new TextDecoder().decode(json.encode(v)));
  }
});

Deno.test("fromJsonValue(): what JSON.parse made of a text, read as fromJsonText reads the text", () => {
  const nested = (d: number) => "[".repeat(d) + "]".repeat(d);
  for (
    const text of [
      "1",
      '"s"',
      "null",
      '{"a":[1,"x",null]}',
      '{"n":{"$bigint":"5"},"d":{"$date":"1970-01-01T00:00:00.000Z"}}',
      '{"m":{"$map":[[1,{"$set":[2]}]]}}',
      nested(64),
    ]
  ) {
    assert.deepEqual(fromJsonValue(JSON.parse(text)), fromJsonText(text));
  }
  // the same refusals: __proto__ (escaped or not), bad tags, nesting past the bound
  for (
    const text of ['{"__proto__":1}', '{"\\u005f_proto__":1}', '{"$date":"x"}', nested(65)]
  ) {
    assert.throws(() => fromJsonText(text), BadPayloadError, text);
    assert.throws(() => fromJsonValue(JSON.parse(text)), BadPayloadError, text);
  }
  assert.throws(() => fromJsonValue(JSON.parse(nested(3)), 2), BadPayloadError);
});

Deno.test("jsonSyntaxError(): the error fromJsonText throws for text that does not parse", () => {
  let thrown: unknown;
  try {
    fromJsonText("{nope");
  } catch (err) {
    thrown = err;
  }
  let cause: unknown;
  try {
    JSON.parse("{nope");
  } catch (err) {
    cause = err;
  }
  const err = jsonSyntaxError(cause);
  assert.ok(err instanceof BadPayloadError && thrown instanceof BadPayloadError);
  assert.equal(err.message, thrown.message);
  assert.equal(err.code, "bad_payload");
});

Deno.test("toJsonTree(): what toJsonText stringifies, scalars as themselves", () => {
  for (const v of [1, -0, NaN, "x", null, true, undefined, 5n, { a: 5n, d: new Date(0) }, [1]]) {
    assert.equal(JSON.stringify(toJsonTree(v)), toJsonText(v));
  }
  assert.equal(toJsonTree("x"), "x");
  assert.deepEqual(toJsonTree(new Set([1])), { $set: [1] });
  assert.throws(() => toJsonTree(() => 1), BadPayloadError);
});
