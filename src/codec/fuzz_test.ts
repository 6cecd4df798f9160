import assert from "node:assert/strict";
import { BadPayloadError } from "../errors.ts";
import { json } from "./json.ts";
import { msgpack } from "./msgpack.ts";
import type { Codec } from "./types.ts";

/** mulberry32: a small deterministic PRNG, so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const SEED = 0x7e0be;
const OBJECT_PROTO_KEYS = Reflect.ownKeys(Object.prototype);
const ARRAY_PROTO_KEYS = Reflect.ownKeys(Array.prototype);

const ALLOWED_PROTOS = new Set<unknown>([
  Object.prototype,
  Array.prototype,
  Map.prototype,
  Set.prototype,
  Date.prototype,
  Uint8Array.prototype,
]);

/** Checks a decoded value is built only from the expected kinds of objects. */
function assertSafe(value: unknown): void {
  const stack: unknown[] = [value];
  let seen = 0;
  while (stack.length > 0) {
    const v = stack.pop();
    if (++seen > 1_000_000) assert.fail("decoded value is unexpectedly large");
    if (typeof v !== "object" || v === null) continue;
    assert.ok(ALLOWED_PROTOS.has(Object.getPrototypeOf(v)), "unexpected prototype");
    assert.ok(!Object.hasOwn(v, "__proto__"), "decoded an own __proto__ key");
    if (v instanceof Map) { for (const [k, x] of v) stack.push(k, x); }
    else if (v instanceof Set) { for (const x of v) stack.push(x); }
    else if (!(v instanceof Date) && !(v instanceof Uint8Array)) {
      for (const k of Object.keys(v)) stack.push((v as Record<string, unknown>)[k]);
    }
  }
}

interface Tally {
  decoded: number;
  rejected: number;
}

function feed(codec: Codec, input: Uint8Array, tally: Tally, label: string): void {
  let value: unknown;
  try {
    value = codec.decode(input);
  } catch (err) {
    if (!(err instanceof BadPayloadError)) {
      assert.fail(`${label}: threw ${err} for [${[...input.subarray(0, 24)]}]`);
    }
    assert.equal(err.code, "bad_payload");
    tally.rejected++;
    return;
  }
  assertSafe(value);
  tally.decoded++;
}

function assertPrototypesUntouched(): void {
  assert.deepEqual(Reflect.ownKeys(Object.prototype), OBJECT_PROTO_KEYS);
  assert.deepEqual(Reflect.ownKeys(Array.prototype), ARRAY_PROTO_KEYS);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
}

function randomBytes(rand: () => number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

function mutate(rand: () => number, input: Uint8Array): Uint8Array {
  const bytes = [...input];
  const edits = 1 + Math.floor(rand() * 3);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(rand() * (bytes.length + 1));
    const op = rand();
    if (op < 0.5 && bytes.length > 0) bytes[at % bytes.length] = Math.floor(rand() * 256);
    else if (op < 0.75) bytes.splice(at, 0, Math.floor(rand() * 256));
    else bytes.splice(at, 1);
  }
  return new Uint8Array(bytes);
}

const samples: unknown[] = [
  { handler: "deposit", amount: 5 },
  [1, -1, 300, -300, 70_000, 2 ** 40, 1.5, NaN, -0, Infinity],
  { s: "héllo ✓", long: "y".repeat(300), bin: new Uint8Array([1, 2, 3]) },
  { big: 2n ** 80n, small: -7n, i64: -(2n ** 63n), u64: 2n ** 64n - 1n },
  { dates: [new Date(0), new Date(1_700_000_000_123), new Date(-5), new Date(NaN)] },
  new Map<unknown, unknown>([[1, "a"], ["b", new Set([1, [2]])], [null, { x: undefined }]]),
  { nested: { a: [{ b: [{ c: "deep" }] }] }, u: undefined },
  new Set(["only"]),
];

const deep = (open: number[], levels: number): Uint8Array => {
  const out = new Uint8Array(open.length * levels + 1);
  for (let i = 0; i < levels; i++) out.set(open, i * open.length);
  return out; // the innermost value is 0x00 (zero), or a cut-off container
};

Deno.test("msgpack.decode() fuzz: every input decodes or throws bad_payload, prototypes stay clean", () => {
  const rand = prng(SEED);
  const tally: Tally = { decoded: 0, rejected: 0 };
  const started = performance.now();

  // Random byte strings, short and longer.
  for (let i = 0; i < 6_000; i++) {
    feed(msgpack, randomBytes(rand, Math.floor(rand() * 48)), tally, "random");
  }
  for (let i = 0; i < 200; i++) feed(msgpack, randomBytes(rand, 1_000 + (i % 7)), tally, "random");

  // 100k levels of every container, plain and tagged.
  for (
    const open of [
      [0x91],
      [0xdc, 0, 1],
      [0xdd, 0, 0, 0, 1],
      [0x81, 0xa0],
      [0xde, 0, 1, 0xa0],
      [0xdf, 0, 0, 0, 1, 0xa0],
      [0xd4, 0x73, 0, 0x91],
      [0xd4, 0x6d, 0, 0x81, 0xc0],
      [0x81, 0x91], // an array as a key
    ]
  ) feed(msgpack, deep(open, 100_000), tally, `deep ${open}`);

  // Huge length headers of every sized type, followed by a few bytes.
  for (const header of [0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf]) {
    for (const fill of [0xff, 0x7f]) {
      const width = [0xc4, 0xd9].includes(header)
        ? 1
        : [0xc5, 0xda, 0xdc, 0xde].includes(header)
        ? 2
        : 4;
      feed(
        msgpack,
        new Uint8Array([header, ...new Array(width).fill(fill), 1, 2, 3]),
        tally,
        "huge",
      );
    }
  }
  for (const [header, width] of [[0xc7, 1], [0xc8, 2], [0xc9, 4]] as const) {
    for (let type = -128; type < 128; type += 17) {
      feed(
        msgpack,
        new Uint8Array([header, ...new Array(width).fill(0xff), type & 0xff, 1]),
        tally,
        "huge ext",
      );
    }
  }

  // Extension types of every code, in every length form.
  for (let type = -128; type < 128; type++) {
    const t = type & 0xff;
    for (const [head, len] of [[0xd4, 1], [0xd5, 2], [0xd6, 4], [0xd7, 8], [0xd8, 16]] as const) {
      feed(msgpack, new Uint8Array([head, t, ...new Array(len).fill(0)]), tally, `fixext ${type}`);
      feed(
        msgpack,
        new Uint8Array([head, t, ...new Array(len).fill(0xff)]),
        tally,
        `fixext ${type}`,
      );
      // A tag followed by a value.
      feed(msgpack, new Uint8Array([head, t, ...new Array(len).fill(0), 0x91, 0x01]), tally, "tag");
    }
    for (const len of [0, 3, 12, 20]) {
      feed(
        msgpack,
        new Uint8Array([0xc7, len, t, ...new Array(len).fill(0x80)]),
        tally,
        `ext ${type}`,
      );
    }
  }

  // Valid messages cut at every point, and randomly mutated.
  const valid = samples.map((s) => msgpack.encode(s));
  for (const message of valid) {
    for (let cut = 0; cut < message.length; cut++) {
      feed(msgpack, message.subarray(0, cut), tally, "truncated");
    }
  }
  for (let i = 0; i < 6_000; i++) {
    feed(msgpack, mutate(rand, valid[i % valid.length]!), tally, "mutated");
  }

  assertPrototypesUntouched();
  assert.ok(tally.decoded > 0 && tally.rejected > 0, JSON.stringify(tally));
  assert.ok(performance.now() - started < 20_000, "fuzzing took too long");
});

Deno.test("json.decode() fuzz: every input decodes or throws bad_payload, prototypes stay clean", () => {
  const rand = prng(SEED + 1);
  const tally: Tally = { decoded: 0, rejected: 0 };
  const enc = new TextEncoder();
  const alphabet = enc.encode('{}[]",:0123456789-.eE truefalsnul$bigintdaemps_proto\\u');

  for (let i = 0; i < 4_000; i++) {
    feed(json, randomBytes(rand, Math.floor(rand() * 32)), tally, "random");
    const n = Math.floor(rand() * 32);
    const chars = new Uint8Array(n);
    for (let j = 0; j < n; j++) chars[j] = alphabet[Math.floor(rand() * alphabet.length)]!;
    feed(json, chars, tally, "json-ish");
  }

  for (
    const [open, close] of [["[", "]"], ['{"a":', "}"], ['{"$set":[', "]}"], [
      '{"$map":[[1,',
      "]]}",
    ], ['{"$object":{"a":', "}}"]]
  ) {
    feed(json, enc.encode(open!.repeat(100_000) + "1" + close!.repeat(100_000)), tally, "deep");
    feed(json, enc.encode(open!.repeat(100_000)), tally, "deep open");
  }

  const crafted = [
    '{"__proto__":{"polluted":1}}',
    '{"constructor":{"prototype":{"polluted":1}}}',
    '[{"__proto__":[]}]',
    '{"$object":{"__proto__":{"polluted":1}}}',
    '{"$map":[[{"__proto__":1},2]]}',
    '{"$set":[{"__proto__":{"polluted":1}}]}',
    '{"$bigint":"' + "9".repeat(100_000) + '"}',
    '{"$bytes":"' + "A".repeat(4_000) + '"}',
    '{"\\u005f_proto__":{"polluted":1}}',
  ];
  for (const text of crafted) feed(json, enc.encode(text), tally, "crafted");

  const valid = samples.map((s) => json.encode(s));
  for (const message of valid) {
    for (let cut = 0; cut < message.length; cut += 3) {
      feed(json, message.subarray(0, cut), tally, "truncated");
    }
  }
  for (let i = 0; i < 4_000; i++) {
    feed(json, mutate(rand, valid[i % valid.length]!), tally, "mutated");
  }

  assertPrototypesUntouched();
  assert.ok(tally.decoded > 0 && tally.rejected > 0, JSON.stringify(tally));
});

Deno.test("msgpack and json round-trip randomly generated values", () => {
  const rand = prng(SEED + 2);
  const pick = <T>(items: T[]): T => items[Math.floor(rand() * items.length)]!;
  const gen = (depth: number): unknown => {
    const r = rand();
    if (depth > 5 || r < 0.4) {
      return pick<() => unknown>([
        () => Math.floor(rand() * 2 ** 40) - 2 ** 39,
        () => rand() * 1e6 - 5e5,
        () => pick([NaN, Infinity, -Infinity, -0, 0]),
        () => BigInt(Math.floor(rand() * 2 ** 50)) ** BigInt(1 + Math.floor(rand() * 3)),
        () => "s".repeat(Math.floor(rand() * 40)) + "é✓",
        () => pick([true, false, null]),
        () => new Date(Math.floor(rand() * 4e12) - 1e12),
        () => randomBytes(rand, Math.floor(rand() * 10)),
      ])();
    }
    const n = Math.floor(rand() * 5);
    if (r < 0.6) return Array.from({ length: n }, () => gen(depth + 1));
    if (r < 0.7) return new Set(Array.from({ length: n }, () => gen(depth + 1)));
    if (r < 0.8) {
      return new Map(Array.from({ length: n }, (_, i) => [i % 2 ? `k${i}` : i, gen(depth + 1)]));
    }
    return Object.fromEntries(
      Array.from({ length: n }, (_, i) => [`k${i}${pick(["", "$", "_"])}`, gen(depth + 1)]),
    );
  };
  for (let i = 0; i < 1_000; i++) {
    const value = gen(0);
    assert.deepEqual(msgpack.decode(msgpack.encode(value)), value);
    assert.deepEqual(json.decode(json.encode(value)), value);
  }
});
