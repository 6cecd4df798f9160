/**
 * The JSON codec (`application/json`, UTF-8), for HTTP clients and debugging.
 *
 * Plain JSON travels as itself: what `curl` sends decodes to plain objects, arrays, strings,
 * numbers, booleans and `null`. Values JSON has no form for are written as an object with a
 * single `$`-key, and such objects are read back as those values:
 *
 * | value                               | JSON form                                          |
 * | ----------------------------------- | -------------------------------------------------- |
 * | `bigint`                            | `{"$bigint":"-123"}` (decimal string)              |
 * | `Date`                              | `{"$date":"2024-01-02T03:04:05.678Z"}`, `{"$date":null}` when invalid |
 * | `Map`                               | `{"$map":[[key,value],…]}` (keys of any type)      |
 * | `Set`                               | `{"$set":[…]}`                                     |
 * | `Uint8Array`                        | `{"$bytes":"AQID"}` (standard base64)              |
 * | `NaN`, `Infinity`, `-Infinity`, `-0`| `{"$number":"NaN"}`, … , `{"$number":"-0"}`        |
 * | `undefined` (top level, in arrays)  | `{"$undefined":true}`                              |
 * | `undefined` as a property value     | the property is left out, as `JSON.stringify` does |
 * | an object whose only key is a tag   | escaped: `{"$object":{"$date":"not a tag"}}`       |
 *
 * Class instances are written as their `toJSON()` result when they have one, else as plain
 * objects of their own enumerable properties.
 *
 * Refused with `BadPayloadError` (code `bad_payload`): functions, symbols, cyclic values,
 * nesting deeper than `maxDepth`, `Error`, `RegExp`, `Promise`, weak collections,
 * `ArrayBuffer` and typed arrays other than `Uint8Array`, the key `__proto__` (encoding and
 * decoding), invalid UTF-8, invalid JSON, and tags with a malformed value.
 *
 * @module
 */

import type { Codec } from "./types.ts";
import type { BadPayloadError } from "../errors.ts";
import {
  asBadPayload,
  checkMaxDepth,
  decodeError as decodeErrorOf,
  DEFAULT_MAX_DEPTH,
  describe,
  encodeError as encodeErrorOf,
  isOpaque,
  nestingError,
} from "./_common.ts";

/** The content type of {@link json}. */
const JSON_CONTENT_TYPE = "application/json";

/** Options of {@link jsonCodec}. */
export interface JsonCodecOptions {
  /**
   * The deepest nesting of containers (arrays, objects, Maps, Sets) accepted when encoding and
   * decoding; a top-level `[]` has depth 1, and a tag does not add a level of its own.
   * An integer from 1 to 10 000.
   * @default {64}
   */
  maxDepth?: number;
}

const TAGS = new Set([
  "$bigint",
  "$date",
  "$map",
  "$set",
  "$bytes",
  "$number",
  "$undefined",
  "$object",
]);
const NUMBERS: Record<string, number> = {
  NaN: NaN,
  Infinity: Infinity,
  "-Infinity": -Infinity,
  "-0": -0,
};

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

const encodeError = (what: string) => encodeErrorOf("JSON", what);
const decodeError = (reason: string, cause?: unknown) => decodeErrorOf("JSON", reason, cause);
const tooDeep = (maxDepth: number) =>
  decodeError(`the value is nested deeper than ${maxDepth} levels`);

function toBase64(bytes: Uint8Array): string {
  const native = (bytes as { toBase64?: () => string }).toBase64;
  if (typeof native === "function") return native.call(bytes);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  const native = (Uint8Array as { fromBase64?: (s: string) => Uint8Array }).fromBase64;
  if (typeof native === "function") return native(text);
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encoding: build a JSON-safe tree, then JSON.stringify it.

function toTree(value: unknown, depth: number, path: object[], maxDepth: number): unknown {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (Number.isFinite(value) && !(value === 0 && 1 / value < 0)) return value;
      return { $number: Object.is(value, -0) ? "-0" : String(value) };
    case "bigint":
      return { $bigint: value.toString() };
    case "undefined":
      return { $undefined: true };
    case "object":
      return value === null ? null : objectToTree(value, depth, path, maxDepth);
    default:
      throw encodeError(`a ${typeof value}`);
  }
}

function objectToTree(value: object, depth: number, path: object[], maxDepth: number): unknown {
  if (value instanceof Date) {
    return { $date: Number.isNaN(value.getTime()) ? null : value.toISOString() };
  }
  if (value instanceof Uint8Array) return { $bytes: toBase64(value) };
  if (depth >= maxDepth) throw nestingError("JSON", value, path, maxDepth);
  const next = depth + 1;
  path.push(value);
  let out: unknown;
  if (Array.isArray(value)) {
    const items: unknown[] = [];
    for (let i = 0; i < value.length; i++) items.push(toTree(value[i], next, path, maxDepth));
    out = items;
  } else if (value instanceof Map) {
    const entries: unknown[] = [];
    for (const [k, v] of value) {
      entries.push([toTree(k, next, path, maxDepth), toTree(v, next, path, maxDepth)]);
    }
    out = { $map: entries };
  } else if (value instanceof Set) {
    const items: unknown[] = [];
    for (const item of value) items.push(toTree(item, next, path, maxDepth));
    out = { $set: items };
  } else {
    const proto = Object.getPrototypeOf(value);
    if (
      proto !== Object.prototype && proto !== null &&
      typeof (value as { toJSON?: unknown }).toJSON === "function"
    ) {
      path.pop();
      return toTree((value as { toJSON(): unknown }).toJSON(), depth, path, maxDepth);
    }
    if (isOpaque(value)) throw encodeError(describe(value));
    const fields: Record<string, unknown> = {};
    const keys = Object.keys(value);
    for (const key of keys) {
      if (key === "__proto__") throw encodeError('an object with the key "__proto__"');
      const item = (value as Record<string, unknown>)[key];
      if (item !== undefined) fields[key] = toTree(item, next, path, maxDepth);
    }
    const only = Object.keys(fields);
    out = only.length === 1 && TAGS.has(only[0]!) ? { $object: fields } : fields;
  }
  path.pop();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding: JSON.parse (iterative in V8, so deep input cannot overflow the stack), then one
// depth-bounded walk that rejects `__proto__` keys and turns tags back into values. The walk
// only ever assigns to properties JSON.parse created as own data properties.

function revive(value: unknown, depth: number, maxDepth: number): unknown {
  if (typeof value !== "object" || value === null) return value;
  const next = depth + 1;
  if (Array.isArray(value)) {
    if (depth >= maxDepth) throw tooDeep(maxDepth);
    for (let i = 0; i < value.length; i++) value[i] = revive(value[i], next, maxDepth);
    return value;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  // Tags of scalars (a Date, bytes, …) are not containers and do not count towards the depth.
  if (keys.length === 1 && TAGS.has(keys[0]!)) return reviveTag(keys[0]!, record, depth, maxDepth);
  if (depth >= maxDepth) throw tooDeep(maxDepth);
  for (const key of keys) {
    if (key === "__proto__") throw decodeError('the object key "__proto__" is not allowed');
  }
  for (const key of keys) record[key] = revive(record[key], next, maxDepth);
  return record;
}

function reviveTag(
  tag: string,
  record: Record<string, unknown>,
  depth: number,
  maxDepth: number,
): unknown {
  const data = record[tag];
  const next = depth + 1;
  switch (tag) {
    case "$bigint":
      if (typeof data === "string" && /^-?\d+$/.test(data)) return BigInt(data);
      break;
    case "$date": {
      if (data === null) return new Date(NaN);
      if (typeof data !== "string") break;
      const date = new Date(data);
      if (!Number.isNaN(date.getTime())) return date;
      break;
    }
    case "$number":
      if (typeof data === "string" && Object.hasOwn(NUMBERS, data)) return NUMBERS[data];
      break;
    case "$undefined":
      if (data === true) return undefined;
      break;
    case "$bytes":
      if (typeof data === "string") {
        try {
          return fromBase64(data);
        } catch (cause) {
          throw decodeError("$bytes is not valid base64", cause);
        }
      }
      break;
    case "$set":
      if (Array.isArray(data)) {
        if (depth >= maxDepth) break;
        return new Set(data.map((item) => revive(item, next, maxDepth)));
      }
      break;
    case "$map":
      if (Array.isArray(data) && data.every((e) => Array.isArray(e) && e.length === 2)) {
        if (depth >= maxDepth) break;
        const map = new Map<unknown, unknown>();
        for (const [k, v] of data as [unknown, unknown][]) {
          map.set(revive(k, next, maxDepth), revive(v, next, maxDepth));
        }
        return map;
      }
      break;
    case "$object":
      if (typeof data === "object" && data !== null && !Array.isArray(data)) {
        if (depth >= maxDepth) break;
        const fields = data as Record<string, unknown>;
        const keys = Object.keys(fields);
        if (keys.includes("__proto__")) {
          throw decodeError('the object key "__proto__" is not allowed');
        }
        for (const key of keys) fields[key] = revive(fields[key], next, maxDepth);
        return fields;
      }
      break;
  }
  if (depth >= maxDepth) throw tooDeep(maxDepth);
  throw decodeError(`the tag ${tag} has an invalid value`);
}

/**
 * Creates a JSON {@link Codec} (content type `application/json`). See the module documentation
 * for the tagged forms of `bigint`, `Date`, `Map`, `Set`, `Uint8Array` and `undefined`.
 *
 * `decode` is safe for untrusted bytes: anything it cannot decode throws `BadPayloadError`
 * (code `bad_payload`).
 *
 * @param options The nesting bound.
 * @returns A codec.
 * @throws {RangeError} When `maxDepth` is not an integer from 1 to 10 000.
 *
 * @example
 * ```ts
 * import { jsonCodec } from "./json.ts";
 * const codec = jsonCodec({ maxDepth: 16 });
 * const bytes = codec.encode({ amount: 5n });
 * new TextDecoder().decode(bytes); // '{"amount":{"$bigint":"5"}}'
 * codec.decode(bytes); // { amount: 5n }
 * ```
 */
export function jsonCodec(options: JsonCodecOptions = {}): Codec {
  const maxDepth = checkMaxDepth(options.maxDepth ?? DEFAULT_MAX_DEPTH);
  return {
    contentType: JSON_CONTENT_TYPE,
    encode(value: unknown): Uint8Array {
      return encoder.encode(toJsonText(value, maxDepth));
    },
    decode(bytes: Uint8Array): unknown {
      if (!(bytes instanceof Uint8Array)) throw decodeError("it is not a Uint8Array");
      let text: string;
      try {
        text = decoder.decode(bytes);
      } catch (cause) {
        throw decodeError("it is not valid UTF-8", cause);
      }
      return fromJsonText(text, maxDepth);
    },
  };
}

/**
 * The JSON text of a value, as {@link jsonCodec} writes it before UTF-8 (for an HTTP
 * response, which takes text without a copy through a byte array).
 *
 * @example
 * ```ts
 * import { fromJsonText, toJsonText } from "@troupe/troupe/spi";
 * const text = toJsonText({ at: new Date(0), n: 1n }); // Date and bigint are tagged
 * console.log(fromJsonText(text)); // { at: 1970-01-01T00:00:00.000Z, n: 1n }
 * ```
 */
export function toJsonText(value: unknown, maxDepth: number = DEFAULT_MAX_DEPTH): string {
  return JSON.stringify(toJsonTree(value, maxDepth));
}

/**
 * The plain JSON value {@link toJsonText} stringifies: `value` with what JSON has no form for
 * tagged (bigint, Date, Map, Set, bytes, …), and nothing `JSON.stringify` could refuse or call
 * (for a runtime's own `JSON.stringify`, such as `Response.json()`'s). A string, boolean, null or
 * finite number is itself. Refuses what the codec refuses (`BadPayloadError`).
 *
 * @example
 * ```ts
 * import { toJsonTree } from "@troupe/troupe/spi";
 * console.log(toJsonTree({ n: 1n, at: new Date(0) }));
 * // { n: { $bigint: "1" }, at: { $date: "1970-01-01T00:00:00.000Z" } }
 * ```
 */
export function toJsonTree(value: unknown, maxDepth: number = DEFAULT_MAX_DEPTH): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  try {
    return toTree(value, 0, [], maxDepth);
  } catch (cause) {
    throw asBadPayload("JSON", "encode", cause); // e.g. from a throwing toJSON()
  }
}

/**
 * A value from JSON text, as {@link jsonCodec} reads it after UTF-8.
 *
 * @example
 * ```ts
 * import { fromJsonText } from "@troupe/troupe/spi";
 * console.log(fromJsonText('{"a":[1,2]}')); // { a: [ 1, 2 ] }
 * ```
 */
export function fromJsonText(text: string, maxDepth: number = DEFAULT_MAX_DEPTH): unknown {
  // A short text with no `$` (no tag), no `\` (no escaped one) and no `__proto__` has nothing
  // to revive and cannot nest deeper than half its length: JSON.parse's value is the answer.
  if (
    text.length < 2 * maxDepth && !text.includes("$") && !text.includes("\\") &&
    !text.includes("__proto__")
  ) {
    try {
      return JSON.parse(text);
    } catch (cause) {
      throw decodeError(String(cause), cause);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw decodeError(String(cause), cause);
  }
  try {
    return revive(parsed, 0, maxDepth);
  } catch (cause) {
    throw asBadPayload("JSON", "decode", cause);
  }
}

/**
 * A value from what `JSON.parse` made of a JSON text (a body a runtime parsed itself, such as
 * `Request.json()`'s), as {@link fromJsonText} reads that text: tags revived, `__proto__` keys
 * and nesting past `maxDepth` refused (`BadPayloadError`). Objects and arrays are revived in
 * place.
 *
 * @example
 * ```ts
 * import { fromJsonValue } from "@troupe/troupe/spi";
 * console.log(fromJsonValue(JSON.parse('{"n":{"$bigint":"5"}}'))); // { n: 5n }
 * ```
 */
export function fromJsonValue(value: unknown, maxDepth: number = DEFAULT_MAX_DEPTH): unknown {
  if (typeof value !== "object" || value === null) return value;
  try {
    return revive(value, 0, maxDepth);
  } catch (cause) {
    throw asBadPayload("JSON", "decode", cause);
  }
}

/**
 * The error of a JSON text that does not parse (`cause`: the `SyntaxError` of `JSON.parse`), as
 * {@link fromJsonText} throws it.
 *
 * @example
 * ```ts
 * import { jsonSyntaxError } from "@troupe/troupe/spi";
 * try {
 *   JSON.parse("{nope");
 * } catch (err) {
 *   console.log(jsonSyntaxError(err).code); // "bad_payload"
 * }
 * ```
 */
export function jsonSyntaxError(cause: unknown): BadPayloadError {
  return decodeError(String(cause), cause);
}

/**
 * The default JSON codec (nesting bound 64).
 *
 * @example
 * ```ts
 * import { json } from "./json.ts";
 * const bytes = json.encode({ handler: "deposit", amount: 5 });
 * json.decode(bytes); // { handler: "deposit", amount: 5 }
 * ```
 */
export const json: Codec = jsonCodec();
