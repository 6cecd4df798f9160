/**
 * The codec layer: the built-in codecs, lookup by content type, a registry for extra codecs,
 * and the payload size check.
 *
 * @example
 * ```ts
 * import { codecFor, checkPayloadSize, DEFAULT_MAX_PAYLOAD } from "./mod.ts";
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
export { json, JSON_CONTENT_TYPE, jsonCodec, type JsonCodecOptions } from "./json.ts";
export {
  DEFAULT_MAX_DEPTH,
  msgpack,
  MSGPACK_CONTENT_TYPE,
  msgpackCodec,
  type MsgpackCodecOptions,
} from "./msgpack.ts";

/**
 * The content type used when none is given: MessagePack.
 *
 * @example
 * ```ts
 * import { codecFor, DEFAULT_CONTENT_TYPE } from "./mod.ts";
 * codecFor(DEFAULT_CONTENT_TYPE); // the msgpack codec
 * ```
 */
export const DEFAULT_CONTENT_TYPE = "application/msgpack";

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

/**
 * The media type of a `Content-Type` value: parameters dropped, trimmed, lower case.
 *
 * @param contentType A header value such as `application/json; charset=utf-8`.
 * @returns The media type, e.g. `application/json`.
 *
 * @example
 * ```ts
 * import { normalizeContentType } from "./mod.ts";
 * normalizeContentType(" Application/JSON; charset=utf-8"); // "application/json"
 * ```
 */
export function normalizeContentType(contentType: string): string {
  const semicolon = contentType.indexOf(";");
  return (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
}

const MEDIA_TYPE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/;

/** Options of {@link Codecs.register}. */
export interface RegisterCodecOptions {
  /** Other content types that select the same codec, e.g. `application/x-msgpack`. */
  aliases?: readonly string[];
}

/**
 * A registry of codecs keyed by content type, so a system can be given codecs beyond the
 * built-in MessagePack and JSON ones. Lookups ignore parameters and case.
 *
 * @example
 * ```ts
 * import { Codecs, msgpack, type Codec } from "./mod.ts";
 * const cbor: Codec = {
 *   contentType: "application/cbor",
 *   encode: (value) => msgpack.encode(value), // a stand-in
 *   decode: (bytes) => msgpack.decode(bytes),
 * };
 * const codecs = new Codecs().register(cbor);
 * codecs.get("application/cbor")?.contentType; // "application/cbor"
 * codecs.get("application/json")?.contentType; // "application/json"
 * ```
 */
export class Codecs implements Iterable<Codec> {
  readonly #byType = new Map<string, Codec>();

  /**
   * Creates a registry.
   *
   * @param codecs The codecs to start with. When left out: `msgpack` (also under
   * `application/x-msgpack` and `application/vnd.msgpack`) and `json`.
   */
  constructor(codecs?: Iterable<Codec>) {
    if (codecs === undefined) {
      this.register(msgpack, { aliases: ["application/x-msgpack", "application/vnd.msgpack"] });
      this.register(json);
    } else {
      for (const codec of codecs) this.register(codec);
    }
  }

  /**
   * Adds a codec under its content type (and aliases), replacing any codec registered there.
   *
   * @param codec The codec.
   * @param options Extra content types for it.
   * @returns This registry, for chaining.
   * @throws {TypeError} When a content type is not a `type/subtype` media type.
   *
   * @example
   * ```ts
   * import { Codecs, json } from "./mod.ts";
   * new Codecs([]).register(json, { aliases: ["text/json"] }).get("text/json"); // json
   * ```
   */
  register(codec: Codec, options: RegisterCodecOptions = {}): this {
    for (const type of [codec.contentType, ...(options.aliases ?? [])]) {
      const key = normalizeContentType(type);
      if (!MEDIA_TYPE.test(key)) {
        throw new TypeError(`Cannot register a codec for "${type}": it is not a media type`);
      }
      this.#byType.set(key, codec);
    }
    return this;
  }

  /**
   * The codec for a content type, or `undefined`.
   *
   * @param contentType A content type; parameters such as `charset` are ignored.
   * @returns The codec registered for it.
   *
   * @example
   * ```ts
   * import { Codecs } from "./mod.ts";
   * new Codecs().get("application/json; charset=utf-8")?.contentType; // "application/json"
   * ```
   */
  get(contentType: string): Codec | undefined {
    return this.#byType.get(normalizeContentType(contentType));
  }

  /**
   * The codec for a content type; throws `BadPayloadError` when there is none.
   *
   * @param contentType A content type; parameters such as `charset` are ignored.
   * @returns The codec registered for it.
   * @throws {BadPayloadError} When no codec is registered for it.
   *
   * @example
   * ```ts
   * import { Codecs } from "./mod.ts";
   * new Codecs().require("application/msgpack").contentType; // "application/msgpack"
   * ```
   */
  require(contentType: string): Codec {
    const codec = this.get(contentType);
    if (codec === undefined) {
      throw new BadPayloadError(`No codec is registered for content type "${contentType}"`);
    }
    return codec;
  }

  /**
   * Whether a codec is registered for a content type.
   *
   * @param contentType A content type; parameters are ignored.
   * @returns `true` when {@link Codecs.get} would find one.
   *
   * @example
   * ```ts
   * import { Codecs } from "./mod.ts";
   * new Codecs().has("text/plain"); // false
   * ```
   */
  has(contentType: string): boolean {
    return this.get(contentType) !== undefined;
  }

  /**
   * The registered codecs, each once.
   *
   * @example
   * ```ts
   * import { Codecs } from "./mod.ts";
   * for (const codec of new Codecs()) console.log(codec.contentType);
   * ```
   */
  *[Symbol.iterator](): Iterator<Codec> {
    yield* new Set(this.#byType.values());
  }
}

const builtIn = new Codecs();

/**
 * The built-in codec for a content type (MessagePack or JSON), or `undefined`. Parameters and
 * case are ignored. Use a {@link Codecs} registry to add others.
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
  return builtIn.get(contentType);
}
