import assert from "node:assert/strict";
import { rejectsBadPayload as rejects } from "../util/_testing.ts";
import { msgpack, msgpackCodec } from "./msgpack.ts";

function roundTrip(value: unknown): unknown {
  return msgpack.decode(msgpack.encode(value));
}

const bytes = (...b: number[]) => new Uint8Array(b);

Deno.test("msgpack round-trips plain objects, arrays, strings, booleans and null", () => {
  const value = {
    s: "héllo wörld ✓ 🎉",
    long: "x".repeat(70_000),
    empty: "",
    t: true,
    f: false,
    n: null,
    arr: [1, "two", [3, [4]], {}],
    nested: { a: { b: { c: [] } } },
    constructor: "a plain key",
    prototype: 1,
  };
  assert.deepEqual(roundTrip(value), value);
  assert.deepEqual(roundTrip([]), []);
  assert.equal(roundTrip("top"), "top");
  assert.equal(roundTrip(null), null);
});

Deno.test("msgpack round-trips numbers including NaN, Infinity and -0", () => {
  const numbers = [
    0,
    1,
    -1,
    127,
    128,
    -32,
    -33,
    255,
    256,
    65_535,
    65_536,
    2 ** 32 - 1,
    2 ** 32,
    -(2 ** 31),
    -(2 ** 31) - 1,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    1.5,
    -0.1,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
    NaN,
    Infinity,
    -Infinity,
  ];
  assert.deepEqual(roundTrip(numbers), numbers);
  assert.ok(Object.is(roundTrip(-0), -0));
  assert.ok(Object.is((roundTrip([-0]) as number[])[0], -0));
  assert.ok(Object.is((roundTrip({ z: -0 }) as { z: number }).z, -0));
});

Deno.test("msgpack round-trips bigint of 64 bits and beyond", () => {
  const values = [
    0n,
    5n,
    -5n,
    2n ** 63n - 1n,
    -(2n ** 63n),
    2n ** 63n,
    2n ** 64n - 1n,
    2n ** 64n,
    -(2n ** 64n),
    2n ** 1000n + 12345n,
    -(3n ** 700n),
  ];
  for (const value of values) assert.equal(roundTrip(value), value, String(value));
});

Deno.test("msgpack round-trips Uint8Array as a fresh Uint8Array copy", () => {
  const input = bytes(1, 2, 3, 255);
  const out = roundTrip({ data: input }) as { data: Uint8Array };
  assert.ok(out.data instanceof Uint8Array);
  assert.equal(out.data.constructor, Uint8Array);
  assert.deepEqual([...out.data], [1, 2, 3, 255]);
  const large = new Uint8Array(70_000).map((_, i) => i & 0xff);
  assert.deepEqual(roundTrip(large), large);
  // A decoded Uint8Array does not alias the input buffer.
  const encoded = msgpack.encode(input);
  const decoded = msgpack.decode(encoded) as Uint8Array;
  encoded.fill(0);
  assert.deepEqual([...decoded], [1, 2, 3, 255]);
});

Deno.test("msgpack round-trips Date, including pre-1970, far-future and invalid dates", () => {
  for (
    const date of [
      new Date(0),
      new Date(1_700_000_000_000),
      new Date(1_700_000_000_123),
      new Date(-123_456_789),
      new Date(Date.UTC(2500, 0, 1, 0, 0, 0, 7)),
      new Date(8.64e15),
      new Date(-8.64e15),
    ]
  ) {
    const out = roundTrip(date);
    assert.ok(out instanceof Date);
    assert.equal(out.getTime(), date.getTime());
  }
  assert.ok(Number.isNaN((roundTrip(new Date(NaN)) as Date).getTime()));
});

Deno.test("msgpack round-trips Map with keys of any type and Set, distinct from plain objects", () => {
  const map = new Map<unknown, unknown>([["a", 1], [2, "two"], [null, [1]], [5n, new Set([1])]]);
  const set = new Set<unknown>(["x", 1, { y: 2 }]);
  const out = roundTrip({ map, set, obj: { a: 1 } }) as Record<string, unknown>;
  assert.ok(out.map instanceof Map);
  assert.deepEqual(out.map, map);
  assert.ok(out.set instanceof Set);
  assert.deepEqual(out.set, set);
  assert.equal(Object.getPrototypeOf(out.obj), Object.prototype);
  const stringKeyed = roundTrip(new Map([["a", 1]]));
  assert.ok(stringKeyed instanceof Map);
  assert.deepEqual(roundTrip(new Map()), new Map());
  assert.deepEqual(roundTrip(new Set()), new Set());
});

Deno.test("msgpack round-trips undefined at top level, in arrays and as property values", () => {
  assert.equal(roundTrip(undefined), undefined);
  const out = roundTrip({ a: undefined, b: [undefined, 1] }) as Record<string, unknown>;
  assert.ok("a" in out);
  assert.equal(out.a, undefined);
  assert.deepEqual(out.b, [undefined, 1]);
  // A hole becomes undefined.
  // deno-lint-ignore no-sparse-arrays
  const holes = roundTrip([1, , 3]) as unknown[];
  assert.equal(holes.length, 3);
  assert.ok(1 in holes);
  assert.equal(holes[1], undefined);
});

Deno.test("msgpack encodes class instances as plain objects and uses toJSON", () => {
  class Point {
    constructor(public x: number, public y: number) {}
  }
  assert.deepEqual(roundTrip(new Point(1, 2)), { x: 1, y: 2 });
  assert.equal(roundTrip(new URL("https://example.com/a")), "https://example.com/a");
  assert.deepEqual(roundTrip(Object.assign(Object.create(null), { a: 1 })), { a: 1 });
});

Deno.test("msgpack.encode() returns a copy that later encodes do not overwrite", () => {
  const first = msgpack.encode({ handler: "deposit", amount: 5 });
  const snapshot = [...first];
  for (let i = 0; i < 2_000; i++) msgpack.encode({ handler: "withdraw", amount: i, pad: "z" });
  assert.deepEqual([...first], snapshot);
  assert.equal(first.constructor, Uint8Array);
  assert.equal(first.byteOffset, 0);
  assert.equal(first.buffer.byteLength, first.byteLength);
  assert.deepEqual(msgpack.decode(first), { handler: "deposit", amount: 5 });
});

Deno.test("msgpack.encode() rejects functions, symbols and cyclic values with bad_payload", () => {
  rejects(() => msgpack.encode(() => 1), /function/);
  rejects(() => msgpack.encode({ f() {} }), /function/);
  rejects(() => msgpack.encode([Symbol("s")]), /symbol/);
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  rejects(() => msgpack.encode(cyclic), /cyclic/);
  const list: unknown[] = [];
  list.push([list]);
  rejects(() => msgpack.encode(list), /cyclic/);
  // A shared (acyclic) reference is fine.
  const shared = { x: 1 };
  assert.deepEqual(roundTrip([shared, shared]), [{ x: 1 }, { x: 1 }]);
});

Deno.test("msgpack.encode() rejects Error, RegExp, typed arrays and the __proto__ key", () => {
  rejects(() => msgpack.encode(new Error("x")), /Error/);
  rejects(() => msgpack.encode(/x/), /RegExp/);
  rejects(() => msgpack.encode(new Float64Array(2)), /Float64Array/);
  rejects(() => msgpack.encode(new ArrayBuffer(2)), /ArrayBuffer/);
  rejects(() => msgpack.encode(Promise.resolve()), /Promise/);
  rejects(() => msgpack.encode(JSON.parse('{"__proto__":{"x":1}}')), /__proto__/);
});

Deno.test("msgpack.encode() rejects nesting deeper than maxDepth, decode likewise", () => {
  const nest = (n: number) => {
    let v: unknown = 1;
    for (let i = 0; i < n; i++) v = [v];
    return v;
  };
  assert.deepEqual(roundTrip(nest(64)), nest(64));
  rejects(() => msgpack.encode(nest(65)), /deeper than 64/);
  const shallow = msgpackCodec({ maxDepth: 2 });
  assert.deepEqual(shallow.decode(shallow.encode({ a: [1] })), { a: [1] });
  rejects(() => shallow.encode({ a: [[1]] }), /deeper than 2/);
  rejects(() => shallow.decode(msgpack.encode({ a: [[1]] })), /deeper than 2/);
  rejects(() => shallow.decode(msgpack.encode(new Map([[1, new Set([[1]])]]))), /deeper/);
  assert.throws(() => msgpackCodec({ maxDepth: 0 }), RangeError);
  assert.throws(() => msgpackCodec({ maxDepth: 1.5 }), RangeError);
});

Deno.test("msgpack.decode() rejects 100k levels of nesting with bad_payload, without a stack overflow", () => {
  for (const open of [0x91, 0x81]) {
    const input = new Uint8Array(200_001).fill(open);
    // Maps: 0x81 0xa0 0x81 0xa0 …, each level a one-entry map with the key "".
    if (open === 0x81) { for (let i = 1; i < input.length; i += 2) input[i] = 0xa0; }
    rejects(() => msgpack.decode(input), /deeper than 64/);
  }
  const sets = new Uint8Array(400_000);
  for (let i = 0; i < sets.length; i += 4) sets.set([0xd4, 0x73, 0, 0x91], i);
  rejects(() => msgpack.decode(sets), /deeper than 64/);
});

Deno.test("msgpack.decode() rejects a 4 GiB string header with bad_payload", () => {
  const start = performance.now();
  rejects(() => msgpack.decode(bytes(0xdb, 0xff, 0xff, 0xff, 0xff, 0x61, 0x62)), /ends/);
  assert.ok(performance.now() - start < 100);
});

Deno.test("msgpack.decode() rejects huge bin, array, map and ext headers with bad_payload", () => {
  const headers = [
    [0xc6, 0xff, 0xff, 0xff, 0xff],
    [0xdd, 0xff, 0xff, 0xff, 0xff],
    [0xdf, 0xff, 0xff, 0xff, 0xff],
    [0xc9, 0xff, 0xff, 0xff, 0xff, 0x00],
    [0xdc, 0xff, 0xff],
    [0xde, 0xff, 0xff],
    [0xda, 0xff, 0xff],
    [0xc5, 0xff, 0xff],
    [0xc8, 0xff, 0xff, 0x00],
    [0xd4, 0x73, 0x00, 0xdd, 0xff, 0xff, 0xff, 0xff],
    [0xd4, 0x6d, 0x00, 0xdf, 0xff, 0xff, 0xff, 0xff],
  ];
  for (const header of headers) rejects(() => msgpack.decode(bytes(...header, 1, 2, 3)));
  // Nested array headers that each claim the rest of the input allocate nothing up front.
  const nested = new Uint8Array(50 * 5 + 1000);
  for (let i = 0; i < 50; i++) nested.set([0xdd, 0, 0x0f, 0xff, 0xff], i * 5);
  rejects(() => msgpack.decode(nested));
});

Deno.test("msgpack.decode() rejects truncated input and trailing bytes with bad_payload", () => {
  const valid = msgpack.encode({ a: [1, "two", 3.5, 2n ** 70n, new Date(5)] });
  for (let cut = 0; cut < valid.length; cut++) {
    rejects(() => msgpack.decode(valid.subarray(0, cut)));
  }
  rejects(() => msgpack.decode(bytes(0x01, 0x02)), /1 bytes follow/);
  rejects(() => msgpack.decode(bytes()), /ends/);
});

Deno.test("msgpack.decode() rejects Error, RegExp, reference, record and unknown extensions", () => {
  const error = bytes(0xd4, 0x65, 0x00, 0x93, 0xa1, 0x45, 0xa1, 0x6d, 0xc0);
  rejects(() => msgpack.decode(error), /extension type 101/);
  const regexp = bytes(0xd4, 0x78, 0x00, 0x92, 0xa1, 0x61, 0xa0);
  rejects(() => msgpack.decode(regexp), /extension type 120/);
  rejects(() => msgpack.decode(bytes(0xd6, 0x69, 0, 0, 0, 1, 0x90)), /extension type 105/);
  rejects(() => msgpack.decode(bytes(0xd6, 0x70, 0, 0, 0, 1)), /extension type 112/);
  rejects(() => msgpack.decode(bytes(0xd4, 0x72, 0x40, 0x91, 0xa1, 0x61, 0x01)), /type 114/);
  rejects(() => msgpack.decode(bytes(0xc1)), /0xc1/);
  rejects(() => msgpack.decode(bytes(0xd4, 0x73, 0x00, 0x80)), /Set tag/);
});

Deno.test("msgpack.decode() never changes a prototype through __proto__, constructor or prototype keys", () => {
  // {"__proto__": {"polluted": 1}}
  const proto = bytes(
    0x81,
    0xa9,
    ...new TextEncoder().encode("__proto__"),
    0x81,
    0xa8,
    ...new TextEncoder().encode("polluted"),
    0x01,
  );
  rejects(() => msgpack.decode(proto), /__proto__/);
  // The same with a str8 key.
  const proto8 = bytes(0x81, 0xd9, 9, ...new TextEncoder().encode("__proto__"), 0x01);
  rejects(() => msgpack.decode(proto8), /__proto__/);
  const other = msgpack.decode(
    msgpack.encode({ constructor: { prototype: { polluted: 1 } }, prototype: { polluted: 1 } }),
  ) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(other), Object.prototype);
  assert.deepEqual(other.constructor, { prototype: { polluted: 1 } });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, "polluted"), false);
});

Deno.test("msgpack.decode() rejects invalid UTF-8 and non-string object keys", () => {
  rejects(() => msgpack.decode(bytes(0xa2, 0xc3, 0x28)), /UTF-8/);
  rejects(() => msgpack.decode(bytes(0xd9, 40, ...new Array(39).fill(0x61), 0xff)), /UTF-8/);
  rejects(() => msgpack.decode(bytes(0x81, 0x90, 0x01)), /key/);
  assert.deepEqual(msgpack.decode(bytes(0x81, 0x07, 0x01)), { 7: 1 });
});

Deno.test("msgpack.decode() reads what other MessagePack producers write", () => {
  // int64 0x0000000000000005 decodes as a bigint; float32; timestamp 32/64/96.
  assert.equal(msgpack.decode(bytes(0xd3, 0, 0, 0, 0, 0, 0, 0, 5)), 5n);
  assert.equal(msgpack.decode(bytes(0xca, 0x3f, 0xc0, 0, 0)), 1.5);
  assert.equal((msgpack.decode(bytes(0xd6, 0xff, 0, 0, 0, 10)) as Date).getTime(), 10_000);
  assert.equal(
    (msgpack.decode(bytes(0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 1)) as Date).getTime(),
    1000,
  );
  assert.equal(
    (msgpack.decode(
      bytes(0xc7, 12, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
    ) as Date)
      .getTime(),
    -1000,
  );
  assert.deepEqual(msgpack.decode(bytes(0xc4, 2, 9, 8)), bytes(9, 8));
});
