import assert from "node:assert/strict";
import { rejectsBadPayload as rejects } from "../util/_testing.ts";
import { json, jsonCodec } from "./json.ts";

const enc = new TextEncoder();
const text = (value: unknown) => new TextDecoder().decode(json.encode(value));
const parse = (s: string) => json.decode(enc.encode(s));
const roundTrip = (value: unknown) => json.decode(json.encode(value));

Deno.test("json.decode() reads plain JSON as plain values", () => {
  assert.deepEqual(parse('{"amount":5,"to":"bob","tags":["a",null,true],"n":-1.5e3}'), {
    amount: 5,
    to: "bob",
    tags: ["a", null, true],
    n: -1500,
  });
  assert.equal(parse(" 42 "), 42);
  assert.equal(parse('"héllo"'), "héllo");
  assert.deepEqual(parse('{"$other":1}'), { $other: 1 });
  assert.deepEqual(parse('{"$bigint":"1","x":2}'), { $bigint: "1", x: 2 });
});

Deno.test("json.encode() writes plain values as plain JSON", () => {
  assert.equal(text({ handler: "deposit", amount: 5 }), '{"handler":"deposit","amount":5}');
  assert.equal(text([1, "a", null, true]), '[1,"a",null,true]');
});

Deno.test("json round-trips bigint, Date, Map, Set, Uint8Array and special numbers via tags", () => {
  const value = {
    big: 2n ** 100n,
    neg: -5n,
    date: new Date(1_700_000_000_123),
    bad: new Date(NaN),
    map: new Map<unknown, unknown>([[1, "one"], ["k", new Set([1n])]]),
    set: new Set(["a", 2]),
    bytes: new Uint8Array([0, 1, 254, 255]),
    nums: [NaN, Infinity, -Infinity, 1.25],
  };
  const out = roundTrip(value) as typeof value;
  assert.deepEqual(out, value);
  assert.ok(Object.is(roundTrip(-0), -0));
  assert.ok(Number.isNaN(out.bad.getTime()));
  assert.equal(text(5n), '{"$bigint":"5"}');
  assert.equal(text(new Date(0)), '{"$date":"1970-01-01T00:00:00.000Z"}');
  assert.equal(text(new Uint8Array([1, 2, 3])), '{"$bytes":"AQID"}');
  assert.equal(text(new Map([[1, 2]])), '{"$map":[[1,2]]}');
  assert.equal(text(new Set([1])), '{"$set":[1]}');
  assert.equal(text(-0), '{"$number":"-0"}');
});

Deno.test("json encodes undefined as a tag at top level and in arrays, and omits it in objects", () => {
  assert.equal(text(undefined), '{"$undefined":true}');
  assert.equal(roundTrip(undefined), undefined);
  assert.deepEqual(roundTrip([undefined, 1]), [undefined, 1]);
  assert.equal(text({ a: undefined, b: 1 }), '{"b":1}');
});

Deno.test("json escapes plain objects that look like tags so they round-trip", () => {
  for (
    const value of [{ $date: "not a date" }, { $bigint: 1 }, { $object: { $set: 1 } }, {
      $undefined: true,
    }]
  ) {
    assert.deepEqual(roundTrip(value), value);
  }
  assert.equal(text({ $date: "x" }), '{"$object":{"$date":"x"}}');
});

Deno.test("json encodes class instances via toJSON or as plain objects", () => {
  class Point {
    constructor(public x: number, public y: number) {}
  }
  assert.equal(text(new Point(1, 2)), '{"x":1,"y":2}');
  assert.equal(text(new URL("https://example.com/")), '"https://example.com/"');
});

Deno.test("json.encode() rejects functions, symbols, cyclic values, opaque objects and __proto__", () => {
  rejects(() => json.encode(() => 1), /function/);
  rejects(() => json.encode({ s: Symbol("x") }), /symbol/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  rejects(() => json.encode(cyclic), /cyclic/);
  rejects(() => json.encode(new Error("x")), /Error/);
  rejects(() => json.encode(new Int16Array(1)), /Int16Array/);
  rejects(() => json.encode(JSON.parse('{"__proto__":1}')), /__proto__/);
});

Deno.test("json.decode() rejects __proto__ keys and never changes a prototype", () => {
  rejects(() => parse('{"__proto__":{"polluted":1}}'), /__proto__/);
  rejects(() => parse('{"a":[{"b":1,"__proto__":{"polluted":1}}]}'), /__proto__/);
  rejects(() => parse('{"$object":{"__proto__":{"polluted":1}}}'), /__proto__/);
  rejects(() => parse('{"$map":[["__proto__",{"__proto__":{"polluted":1}}]]}'), /__proto__/);
  const out = parse('{"constructor":{"prototype":{"polluted":1}},"prototype":{"polluted":1}}');
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  // A Map key "__proto__" is a harmless Map entry.
  assert.deepEqual(parse('{"$map":[["__proto__",1]]}'), new Map([["__proto__", 1]]));
});

Deno.test("json.decode() rejects nesting deeper than maxDepth, even 100k levels", () => {
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  rejects(() => parse(deep), /deeper than 64/);
  const deepObjects = '{"a":'.repeat(100_000) + "1" + "}".repeat(100_000);
  rejects(() => parse(deepObjects), /deeper than 64/);
  const ok = "[".repeat(64) + "]".repeat(64);
  assert.ok(Array.isArray(parse(ok)));
  rejects(() => parse("[".repeat(65) + "]".repeat(65)), /deeper than 64/);
  // Scalar tags do not count as a level; container tags do.
  assert.ok(parse("[".repeat(64) + '{"$date":null}' + "]".repeat(64)));
  rejects(() => parse("[".repeat(64) + '{"$set":[]}' + "]".repeat(64)), /deeper than 64/);
  const shallow = jsonCodec({ maxDepth: 1 });
  rejects(() => shallow.encode([[1]]), /deeper than 1/);
  assert.throws(() => jsonCodec({ maxDepth: -1 }), RangeError);
});

Deno.test("json.decode() rejects invalid JSON, invalid UTF-8, trailing garbage and bad tags", () => {
  rejects(() => parse(""), /JSON/);
  rejects(() => parse("{"), /JSON/);
  rejects(() => parse('{"a":1} x'), /JSON/);
  rejects(() => parse("NaN"), /JSON/);
  rejects(() => json.decode(new Uint8Array([0x22, 0xc3, 0x28, 0x22])), /UTF-8/);
  rejects(() => parse('{"$bigint":"12a"}'), /\$bigint/);
  rejects(() => parse('{"$bigint":12}'), /\$bigint/);
  rejects(() => parse('{"$date":"yesterday"}'), /\$date/);
  rejects(() => parse('{"$bytes":"***"}'), /base64/);
  rejects(() => parse('{"$map":[[1]]}'), /\$map/);
  rejects(() => parse('{"$set":{}}'), /\$set/);
  rejects(() => parse('{"$number":"1"}'), /\$number/);
  rejects(() => parse('{"$undefined":1}'), /\$undefined/);
  rejects(() => parse('{"$object":[]}'), /\$object/);
});
