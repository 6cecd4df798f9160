import assert from "node:assert/strict";
import { BadPayloadError } from "../errors.ts";
import { fromJsonText, json, toJsonText } from "./json.ts";

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
