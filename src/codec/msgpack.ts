/**
 * The MessagePack codec, Troupe's default wire format.
 *
 * Encoding goes through one reused msgpackr `Packr` (records, structured-clone references and
 * msgpackr's other "more types" are all off). Decoding is this module's own strict reader:
 * msgpackr's `Unpackr` keeps its extension table process-wide (its Error, RegExp, reference and
 * record extensions cannot be turned off per instance) and recurses without a depth bound, so
 * bytes from the network are read here instead, accepting only the types listed below.
 *
 * What travels, and how (both directions):
 *
 * | value                         | wire form                                                   |
 * | ----------------------------- | ----------------------------------------------------------- |
 * | `null`, booleans, strings     | nil, bool, str (strings must be valid UTF-8)                |
 * | numbers                       | int or float; `NaN`, `±Infinity` and `-0` are kept (float)  |
 * | `bigint`                      | int64/uint64 when it fits 64 bits, else ext `0x42` (any size, msgpackr's big-integer form); int64/uint64 always decode as `bigint` |
 * | `Uint8Array` (and `Buffer`)   | bin; decoded as a fresh `Uint8Array` copy                   |
 * | `Date`                        | timestamp ext `-1` (ms precision; an invalid Date stays invalid) |
 * | `Map`                         | fixext1 tag `0x6d` then a map (keys of any type)            |
 * | `Set`                         | fixext1 tag `0x73` then an array (msgpackr's Set tag)       |
 * | `undefined`                   | fixext1 type `0` (msgpackr's form): `{ a: undefined }` keeps its key, array holes become `undefined` |
 * | plain objects, class instances| map with string keys (own enumerable properties; `toJSON()` is used when present) |
 *
 * Refused with `BadPayloadError` (code `bad_payload`): functions, symbols, cyclic values,
 * values nested deeper than `maxDepth`, `Error`, `RegExp`, `Promise`, weak collections,
 * `ArrayBuffer` and typed arrays other than `Uint8Array`, and the object key `__proto__`
 * (which could change a prototype under `Object.assign` or a naive deep merge). On decode:
 * any other extension type, the never-used byte `0xc1`, truncated input, length headers longer
 * than the input, trailing bytes after the value, invalid UTF-8, object keys that are not
 * strings or numbers, and nesting deeper than `maxDepth`.
 *
 * @module
 */

import { addExtension, Packr, RESET_BUFFER_MODE } from "msgpackr/pack";
import type { Codec } from "./types.ts";
import {
  asBadPayload,
  checkMaxDepth,
  decodeError,
  DEFAULT_MAX_DEPTH,
  describe,
  encodeError as encodeErrorOf,
  isOpaque,
  nestingError,
} from "./_common.ts";

/** The content type of {@link msgpack}. */
const MSGPACK_CONTENT_TYPE = "application/msgpack";

/** Options of {@link msgpackCodec}. */
export interface MsgpackCodecOptions {
  /**
   * The deepest nesting of containers (arrays, objects, Maps, Sets) accepted when encoding and
   * decoding; a top-level `[]` has depth 1. An integer from 1 to 10 000.
   * @default {64}
   */
  maxDepth?: number;
}

const EXT_UNDEFINED = 0;
const EXT_TIMESTAMP = -1;
const EXT_BIGINT = 0x42;
const EXT_SET = 0x73;
const EXT_MAP = 0x6d;

/** A value rewritten for the Packr: a tag byte followed by `inner`, or a raw `-0` float. */
class Tagged {
  constructor(readonly tag: number, readonly inner: unknown) {}
}
const NEG_ZERO = new Tagged(-1, undefined);

type Allocate = (size: number) => { target: Uint8Array; position: number };

// msgpackr only lets a class be written with an extension registered process-wide. This one
// matches only the private Tagged class, so other users of msgpackr are not affected; its reader
// lets another msgpackr Unpackr in this process read our Map tag too.
addExtension(
  {
    Class: Tagged,
    type: EXT_MAP,
    pack(tagged: Tagged, allocate: Allocate, pack: (value: unknown) => void): void {
      if (tagged === NEG_ZERO) {
        const { target, position } = allocate(5);
        target.set([0xca, 0x80, 0, 0, 0], position); // float32 -0
        return;
      }
      const { target, position } = allocate(3);
      target[position] = 0xd4; // fixext 1: a tag, followed by the tagged value
      target[position + 1] = tagged.tag;
      target[position + 2] = 0;
      pack(tagged.inner);
    },
    read(value: unknown): unknown {
      return value instanceof Map ? value : new Map(Object.entries(value as object));
    },
  } as unknown as Parameters<typeof addExtension>[0],
);

const encodeError = (what: string) => encodeErrorOf("MessagePack", what);

/**
 * Rewrites a value for the Packr: Maps, Sets and `-0` become {@link Tagged}, class instances
 * plain objects; containers are copied only on the path to a rewritten value. Recursion is
 * bounded by `maxDepth`, which also stops cycles.
 */
function prepare(value: unknown, depth: number, path: object[], maxDepth: number): unknown {
  switch (typeof value) {
    case "string":
    case "boolean":
    case "undefined":
    case "bigint":
      return value;
    case "number":
      return value === 0 && 1 / value < 0 ? NEG_ZERO : value;
    case "object":
      return value === null ? null : prepareObject(value, depth, path, maxDepth);
    default:
      throw encodeError(`a ${typeof value}`);
  }
}

function prepareObject(value: object, depth: number, path: object[], maxDepth: number): unknown {
  if (value instanceof Uint8Array || value instanceof Date) return value;
  if (depth >= maxDepth) throw nestingError("MessagePack", value, path, maxDepth);
  path.push(value);
  let out: unknown;
  const next = depth + 1;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const prepared = prepare(item, next, path, maxDepth);
      if (copy !== undefined) copy.push(prepared);
      else if (!Object.is(prepared, item)) {
        copy = value.slice(0, i);
        copy.push(prepared);
      }
    }
    out = copy ?? value;
  } else {
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
      out = prepareFields(value as Record<string, unknown>, false, next, path, maxDepth);
    } else if (value instanceof Map) {
      const map = new Map<unknown, unknown>();
      for (const [k, v] of value) {
        map.set(prepare(k, next, path, maxDepth), prepare(v, next, path, maxDepth));
      }
      out = new Tagged(EXT_MAP, map);
    } else if (value instanceof Set) {
      const items: unknown[] = [];
      for (const item of value) items.push(prepare(item, next, path, maxDepth));
      out = new Tagged(EXT_SET, items);
    } else if (typeof (value as { toJSON?: unknown }).toJSON === "function") {
      path.pop();
      return prepare((value as { toJSON(): unknown }).toJSON(), depth, path, maxDepth);
    } else if (isOpaque(value)) {
      throw encodeError(describe(value));
    } else {
      out = prepareFields(value as Record<string, unknown>, true, next, path, maxDepth);
    }
  }
  path.pop();
  return out;
}

function prepareFields(
  value: Record<string, unknown>,
  alwaysCopy: boolean,
  depth: number,
  path: object[],
  maxDepth: number,
): Record<string, unknown> {
  const keys = Object.keys(value);
  let copy: Record<string, unknown> | undefined = alwaysCopy ? {} : undefined;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (key === "__proto__") throw encodeError('an object with the key "__proto__"');
    const item = value[key];
    const prepared = prepare(item, depth, path, maxDepth);
    if (copy !== undefined) copy[key] = prepared;
    else if (!Object.is(prepared, item)) {
      copy = {};
      for (let j = 0; j < i; j++) copy[keys[j]!] = value[keys[j]!];
      copy[key] = prepared;
    }
  }
  return copy ?? value;
}

// ---------------------------------------------------------------------------------------------
// Decoding: a strict reader. State lives in module variables (decoding runs no user code, so it
// is never re-entered); recursion happens only for containers, after the depth check.

const EMPTY = new Uint8Array(0);
let src: Uint8Array = EMPTY;
let pos = 0;
let dv: DataView | undefined;
let depthLimit = DEFAULT_MAX_DEPTH;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function fail(reason: string): never {
  throw decodeError("MessagePack", `${reason} (at byte ${pos})`);
}

function truncated(): never {
  return fail("the input ends in the middle of a value");
}

function need(n: number): void {
  if (n > src.length - pos) truncated();
}

function view(): DataView {
  return dv ??= new DataView(src.buffer, src.byteOffset, src.byteLength);
}

function u8(): number {
  if (pos >= src.length) truncated();
  return src[pos++]!;
}

function u16(): number {
  need(2);
  const v = (src[pos]! << 8) | src[pos + 1]!;
  pos += 2;
  return v;
}

function u32(): number {
  need(4);
  const v = view().getUint32(pos);
  pos += 4;
  return v;
}

function readValue(depth: number): unknown {
  const b = u8();
  if (b < 0x80) return b;
  if (b >= 0xe0) return b - 0x100;
  if (b < 0x90) return readObject(b & 0x0f, depth);
  if (b < 0xa0) return readArray(b & 0x0f, depth);
  if (b < 0xc0) return readString(b & 0x1f);
  let v: number | bigint;
  switch (b) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xc4:
      return readBin(u8());
    case 0xc5:
      return readBin(u16());
    case 0xc6:
      return readBin(u32());
    case 0xc7:
      return readExt(u8(), depth);
    case 0xc8:
      return readExt(u16(), depth);
    case 0xc9:
      return readExt(u32(), depth);
    case 0xca:
      need(4);
      v = view().getFloat32(pos);
      pos += 4;
      return v;
    case 0xcb:
      need(8);
      v = view().getFloat64(pos);
      pos += 8;
      return v;
    case 0xcc:
      return u8();
    case 0xcd:
      return u16();
    case 0xce:
      return u32();
    case 0xcf:
      need(8);
      v = view().getBigUint64(pos);
      pos += 8;
      return v;
    case 0xd0:
      v = u8();
      return v < 0x80 ? v : v - 0x100;
    case 0xd1:
      v = u16();
      return v < 0x8000 ? v : v - 0x10000;
    case 0xd2:
      need(4);
      v = view().getInt32(pos);
      pos += 4;
      return v;
    case 0xd3:
      need(8);
      v = view().getBigInt64(pos);
      pos += 8;
      return v;
    case 0xd4:
      return readExt(1, depth);
    case 0xd5:
      return readExt(2, depth);
    case 0xd6:
      return readExt(4, depth);
    case 0xd7:
      return readExt(8, depth);
    case 0xd8:
      return readExt(16, depth);
    case 0xd9:
      return readString(u8());
    case 0xda:
      return readString(u16());
    case 0xdb:
      return readString(u32());
    case 0xdc:
      return readArray(u16(), depth);
    case 0xdd:
      return readArray(u32(), depth);
    case 0xde:
      return readObject(u16(), depth);
    case 0xdf:
      return readObject(u32(), depth);
    default: // 0xc1
      pos--;
      return fail("byte 0xc1 is never used in MessagePack");
  }
}

function enter(depth: number, count: number, minBytesEach: number): void {
  if (depth >= depthLimit) fail(`the value is nested deeper than ${depthLimit} levels`);
  // Every element takes at least one byte (an entry two): a longer count cannot be genuine.
  if (count > (src.length - pos) / minBytesEach) truncated();
}

function readArray(count: number, depth: number): unknown[] {
  enter(depth, count, 1);
  // Small arrays are preallocated; big ones grow, so nested length headers cannot make the
  // reader allocate more than the input holds.
  const out: unknown[] = count <= 16 ? new Array(count) : [];
  for (let i = 0; i < count; i++) out[i] = readValue(depth + 1);
  return out;
}

function readObject(count: number, depth: number): Record<string, unknown> {
  enter(depth, count, 2);
  const out: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) {
    const b = src[pos]!;
    let key: unknown;
    if (b >= 0xa0 && b < 0xc0) {
      pos++;
      key = readString(b & 0x1f);
    } else {
      key = readValue(depth + 1);
      if (typeof key === "number") key = String(key);
      else if (typeof key !== "string") fail("an object key is neither a string nor a number");
    }
    if (key === "__proto__") fail('the object key "__proto__" is not allowed');
    out[key as string] = readValue(depth + 1);
  }
  return out;
}

function readString(length: number): string {
  need(length);
  const start = pos;
  const end = start + length;
  if (length < 32) {
    let out = "";
    let i = start;
    for (; i < end; i++) {
      const c = src[i]!;
      if (c >= 0x80) break;
      out += String.fromCharCode(c);
    }
    if (i === end) {
      pos = end;
      return out;
    }
  }
  let text: string;
  try {
    text = utf8.decode(src.subarray(start, end));
  } catch (cause) {
    throw decodeError("MessagePack", `a string is not valid UTF-8 (at byte ${start})`, cause);
  }
  pos = end;
  return text;
}

function readBin(length: number): Uint8Array {
  need(length);
  // A copy: the caller may keep it, and the input buffer may be reused by the transport.
  const out = new Uint8Array(src.subarray(pos, pos + length));
  pos += length;
  return out;
}

function readExt(length: number, depth: number): unknown {
  need(length + 1);
  const type = (src[pos++]! << 24) >> 24; // int8
  const start = pos;
  pos += length;
  switch (type) {
    case EXT_UNDEFINED:
      return undefined;
    case EXT_TIMESTAMP:
      return readTimestamp(start, length);
    case EXT_BIGINT:
      return readBigInt(start, length);
    case EXT_SET:
      if (length !== 1) break;
      return readTaggedSet(depth);
    case EXT_MAP:
      if (length !== 1) break;
      return readTaggedMap(depth);
  }
  pos = start - 1;
  return fail(`extension type ${type} with ${length} bytes of data is not supported`);
}

function readTimestamp(start: number, length: number): Date {
  const d = view();
  switch (length) {
    case 1: // msgpackr's form of an invalid Date
      return new Date(NaN);
    case 4:
      return new Date(d.getUint32(start) * 1000);
    case 8: {
      const high = d.getUint32(start);
      const nanos = high >>> 2;
      if (nanos > 999_999_999) break;
      const seconds = (high & 0x3) * 0x1_0000_0000 + d.getUint32(start + 4);
      return new Date(seconds * 1000 + nanos / 1e6);
    }
    case 12: {
      const nanos = d.getUint32(start);
      if (nanos > 999_999_999) break;
      return new Date(Number(d.getBigInt64(start + 4)) * 1000 + nanos / 1e6);
    }
  }
  pos = start - 2;
  return fail("a timestamp has an invalid length or nanoseconds field");
}

function readBigInt(start: number, length: number): bigint {
  if (length === 0) fail("a big integer has no bytes");
  let hex = "0x";
  for (let i = start; i < start + length; i++) hex += HEX[src[i]!];
  let value = BigInt(hex);
  if (src[start]! & 0x80) value -= 1n << BigInt(length * 8); // two's complement
  return value;
}

function taggedCount(kind: "Set" | "Map"): number {
  const b = u8();
  if (kind === "Set") {
    if (b >= 0x90 && b < 0xa0) return b & 0x0f;
    if (b === 0xdc) return u16();
    if (b === 0xdd) return u32();
  } else {
    if (b >= 0x80 && b < 0x90) return b & 0x0f;
    if (b === 0xde) return u16();
    if (b === 0xdf) return u32();
  }
  pos--;
  return fail(`a ${kind} tag is not followed by ${kind === "Set" ? "an array" : "a map"}`);
}

function readTaggedSet(depth: number): Set<unknown> {
  const count = taggedCount("Set");
  enter(depth, count, 1);
  const out = new Set<unknown>();
  for (let i = 0; i < count; i++) out.add(readValue(depth + 1));
  return out;
}

function readTaggedMap(depth: number): Map<unknown, unknown> {
  const count = taggedCount("Map");
  enter(depth, count, 2);
  const out = new Map<unknown, unknown>();
  for (let i = 0; i < count; i++) {
    const key = readValue(depth + 1);
    out.set(key, readValue(depth + 1));
  }
  return out;
}

function decodeBytes(bytes: Uint8Array, maxDepth: number): unknown {
  if (!(bytes instanceof Uint8Array)) {
    throw decodeError("MessagePack", "it is not a Uint8Array");
  }
  src = bytes;
  pos = 0;
  dv = undefined;
  depthLimit = maxDepth;
  try {
    const value = readValue(0);
    if (pos !== src.length) fail(`${src.length - pos} bytes follow the value`);
    return value;
  } catch (cause) {
    throw asBadPayload("MessagePack", "decode", cause);
  } finally {
    src = EMPTY;
    dv = undefined;
  }
}

/**
 * Creates a MessagePack {@link Codec} (content type `application/msgpack`). See the module
 * documentation for the values it carries and what it refuses.
 *
 * `encode` returns a fresh `Uint8Array` that the caller owns (msgpackr's buffer is reused
 * internally and never handed out). `decode` is safe for untrusted bytes: anything it cannot
 * decode throws `BadPayloadError` (code `bad_payload`).
 *
 * @param options The nesting bound.
 * @returns A codec; each one reuses a single msgpackr `Packr`.
 * @throws {RangeError} When `maxDepth` is not an integer from 1 to 10 000.
 *
 * @example
 * ```ts
 * import { msgpackCodec } from "./msgpack.ts";
 * const codec = msgpackCodec({ maxDepth: 16 });
 * const bytes = codec.encode({ handler: "deposit", amount: 5n, at: new Date(0) });
 * console.log(codec.decode(bytes)); // { handler: "deposit", amount: 5n, at: 1970-01-01T00:00:00.000Z }
 * ```
 */
export function msgpackCodec(options: MsgpackCodecOptions = {}): Codec {
  const maxDepth = checkMaxDepth(options.maxDepth ?? DEFAULT_MAX_DEPTH);
  const packr = new Packr({
    useRecords: false,
    structuredClone: false,
    moreTypes: false,
    useBigIntExtension: true,
    variableMapSize: true,
    encodeUndefinedAsNil: false,
    writeFunction: () => {
      throw encodeError("a function");
    },
  });
  const pack = (value: unknown): Uint8Array => {
    try {
      const prepared = prepare(value, 0, [], maxDepth);
      // RESET_BUFFER_MODE: the next pack reuses the same bytes, so copy before returning.
      return packr.pack(prepared, RESET_BUFFER_MODE);
    } catch (cause) {
      throw asBadPayload("MessagePack", "encode", cause); // e.g. from a throwing toJSON()
    }
  };
  const codec: Codec & { encodePrefixed(prefix: Uint8Array, value: unknown): Uint8Array } = {
    contentType: MSGPACK_CONTENT_TYPE,
    encode(value: unknown): Uint8Array {
      return new Uint8Array(pack(value));
    },
    // The message path writes its envelope, then the value, into one fresh array (one copy).
    encodePrefixed(prefix: Uint8Array, value: unknown): Uint8Array {
      const packed = pack(value);
      const out = new Uint8Array(prefix.length + packed.length);
      out.set(prefix);
      out.set(packed, prefix.length);
      return out;
    },
    decode(bytes: Uint8Array): unknown {
      return decodeBytes(bytes, maxDepth);
    },
  };
  return codec;
}

/**
 * The default MessagePack codec (nesting bound 64).
 *
 * @example
 * ```ts
 * import { msgpack } from "./msgpack.ts";
 * const bytes = msgpack.encode({ handler: "deposit", amount: 5 });
 * msgpack.decode(bytes); // { handler: "deposit", amount: 5 }
 * ```
 */
export const msgpack: Codec = msgpackCodec();
