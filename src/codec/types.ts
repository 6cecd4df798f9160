/**
 * The Codec port: turns values into bytes and back, chosen per message by content type.
 *
 * @module
 */

/**
 * A codec. `decode` must be safe for untrusted bytes: it throws `BadPayloadError` (code
 * `bad_payload`) for anything it cannot decode, never loops forever, never builds cyclic or
 * prototype-polluting values, and bounds nesting depth.
 *
 * @example
 * ```ts
 * import type { Codec } from "@troupe/troupe/spi";
 * const text: Codec = {
 *   contentType: "text/plain",
 *   encode: (value) => new TextEncoder().encode(String(value)),
 *   decode: (bytes) => new TextDecoder().decode(bytes),
 * };
 * console.log(text.decode(text.encode("hi"))); // "hi"
 * ```
 */
export interface Codec {
  /** The content type it handles, e.g. `application/msgpack`. */
  readonly contentType: string;
  /** Encodes a value; throws `BadPayloadError` for a value it cannot carry. */
  encode(value: unknown): Uint8Array;
  /** Decodes bytes; throws `BadPayloadError` for bad input. */
  decode(bytes: Uint8Array): unknown;
}
