/**
 * What the JSON and MessagePack codecs share: the nesting bound, the values neither carries,
 * and the `BadPayloadError`s both throw, so both word their errors alike. Not exported from
 * the package.
 *
 * @module
 */

import { BadPayloadError } from "../errors.ts";

/** The name of a wire format, as it appears in error messages. */
export type Format = "JSON" | "MessagePack";

/** The default bound on nesting depth of both codecs. */
export const DEFAULT_MAX_DEPTH = 64;

/** Checks a codec's `maxDepth` option; throws `RangeError` when it is out of range. */
export function checkMaxDepth(maxDepth: number): number {
  if (!Number.isInteger(maxDepth) || maxDepth < 1 || maxDepth > 10_000) {
    throw new RangeError(`maxDepth must be an integer from 1 to 10000, got ${maxDepth}`);
  }
  return maxDepth;
}

/** `Cannot encode <what> as <format>`. */
export function encodeError(format: Format, what: string, cause?: unknown): BadPayloadError {
  return new BadPayloadError(
    `Cannot encode ${what} as ${format}`,
    cause === undefined ? {} : { cause },
  );
}

/** `Cannot decode a <format> payload: <reason>`. */
export function decodeError(format: Format, reason: string, cause?: unknown): BadPayloadError {
  return new BadPayloadError(
    `Cannot decode a ${format} payload: ${reason}`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * What to throw for an error caught around encoding or decoding: a `BadPayloadError` as it is,
 * anything else (a `RangeError` from deep inside a library, say) wrapped in one.
 */
export function asBadPayload(
  format: Format,
  direction: "encode" | "decode",
  cause: unknown,
): BadPayloadError {
  if (cause instanceof BadPayloadError) return cause;
  return direction === "encode"
    ? new BadPayloadError(`Cannot encode a value as ${format}: ${String(cause)}`, { cause })
    : decodeError(format, String(cause), cause);
}

/**
 * The error for an object met at the depth bound while encoding: a cycle when it is already
 * on the path from the root, else too deep a value.
 */
export function nestingError(
  format: Format,
  value: object,
  path: readonly object[],
  maxDepth: number,
): BadPayloadError {
  return path.includes(value)
    ? encodeError(format, "a cyclic value")
    : encodeError(format, `a value nested deeper than ${maxDepth} levels`);
}

/** Whether neither codec carries an object of this kind (errors, regexps, buffers, …). */
export function isOpaque(value: object): boolean {
  return value instanceof Error || value instanceof RegExp || value instanceof Promise ||
    value instanceof WeakMap || value instanceof WeakSet || value instanceof ArrayBuffer ||
    ArrayBuffer.isView(value) ||
    (typeof SharedArrayBuffer === "function" && value instanceof SharedArrayBuffer);
}

/** `a RegExp`, `a Promise`, …, or `this object` when the constructor has no name. */
export function describe(value: object): string {
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === "string" && name !== "" ? `a ${name}` : "this object";
}
