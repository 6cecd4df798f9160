/**
 * The codec layer as the runtime uses it: the built-in codecs, lookup by content type, and the
 * payload size check.
 *
 * @example
 * ```ts
 * import { checkPayloadSize, codecFor, DEFAULT_MAX_PAYLOAD } from "./mod.ts";
 * const codec = codecFor("application/json; charset=utf-8")!;
 * const bytes = codec.encode({ amount: 5 });
 * checkPayloadSize(bytes.byteLength, DEFAULT_MAX_PAYLOAD, "Request body");
 * ```
 *
 * @module
 */

import { BadPayloadError } from "../errors.ts";
import { json } from "./json.ts";
import { msgpack } from "./msgpack.ts";
import type { Codec } from "./types.ts";

export type { Codec } from "./types.ts";
export { json } from "./json.ts";
export { msgpack } from "./msgpack.ts";

/**
 * The default bound on an encoded payload: 1 MiB.
 *
 * @example
 * ```ts
 * import { checkPayloadSize, DEFAULT_MAX_PAYLOAD } from "./mod.ts";
 * checkPayloadSize(512, DEFAULT_MAX_PAYLOAD); // fine
 * ```
 */
export const DEFAULT_MAX_PAYLOAD: number = 1024 * 1024;

/**
 * Throws `BadPayloadError` (code `bad_payload`) when a payload is larger than the limit.
 * Call it before decoding bytes from the network and after encoding a value to send.
 *
 * @param byteLength The size of the payload in bytes.
 * @param limit The largest size allowed, in bytes.
 * @param what What the payload is, for the message, e.g. `"Reply to account/alice.deposit"` (default `"Payload"`).
 * @throws {BadPayloadError} When `byteLength > limit`.
 *
 * @example
 * ```ts
 * import { checkPayloadSize } from "./mod.ts";
 * try {
 *   checkPayloadSize(2_000_000, 1_048_576, "Message to account/alice");
 * } catch (err) {
 *   // BadPayloadError: Message to account/alice of 2000000 bytes exceeds the limit of 1048576 bytes
 * }
 * ```
 */
export function checkPayloadSize(byteLength: number, limit: number, what = "Payload"): void {
  if (byteLength > limit) {
    throw new BadPayloadError(
      `${what} of ${byteLength} bytes exceeds the limit of ${limit} bytes`,
    );
  }
}

/** The media type of a `Content-Type` value: parameters dropped, trimmed, lower case. */
function mediaType(contentType: string): string {
  const semicolon = contentType.indexOf(";");
  return (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
}

const builtIn: ReadonlyMap<string, Codec> = new Map([
  [msgpack.contentType, msgpack],
  ["application/x-msgpack", msgpack],
  ["application/vnd.msgpack", msgpack],
  [json.contentType, json],
]);

/**
 * The built-in codec for a content type (MessagePack or JSON), or `undefined`. Parameters and
 * case are ignored.
 *
 * @param contentType A content type, e.g. `application/json; charset=utf-8`.
 * @returns The codec, or `undefined` when there is no built-in one.
 *
 * @example
 * ```ts
 * import { codecFor } from "./mod.ts";
 * codecFor("application/msgpack")?.contentType; // "application/msgpack"
 * codecFor("application/json; charset=utf-8")?.contentType; // "application/json"
 * codecFor("text/plain"); // undefined
 * ```
 */
export function codecFor(contentType: string): Codec | undefined {
  return builtIn.get(mediaType(contentType));
}
