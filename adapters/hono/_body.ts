/**
 * Request bodies: read with a byte limit (before reading it all), decoded by content type
 * (JSON or MessagePack); replies encoded as JSON (or MessagePack when asked for). JSON is
 * Troupe's JSON codec: plain JSON as itself, and `$`-tagged objects for what JSON has no form
 * for (bigint, Date, Map, Set, bytes), so a typed client gets those values back.
 *
 * @module
 */

import { json, msgpack } from "../../mod.ts";
import { GatewayError } from "./_errors.ts";

/** The media type of a header value: parameters dropped, trimmed, lower case. */
export function mediaType(value: string | null | undefined): string {
  if (!value) return "";
  const semicolon = value.indexOf(";");
  return (semicolon === -1 ? value : value.slice(0, semicolon)).trim().toLowerCase();
}

const MSGPACK_TYPES: ReadonlySet<string> = new Set([
  "application/msgpack",
  "application/x-msgpack",
  "application/vnd.msgpack",
]);

/** Whether a media type names MessagePack. */
export function isMsgpack(type: string): boolean {
  return MSGPACK_TYPES.has(type);
}

/**
 * Reads a request body within `timeout` ms (then `408 timeout`: a client that sends a byte a
 * second must not hold a request for ever), refusing it with 413 as soon as it is known to be
 * larger than `limit`: from `Content-Length` before reading anything, else while counting the
 * streamed bytes. A body the client cut off is `400 bad_payload`, never an internal error.
 */
export async function readBody(
  req: Request,
  limit: number,
  timeout: number,
): Promise<Uint8Array> {
  const tooLarge = (size: string) =>
    new GatewayError(
      `Request body of ${size} bytes exceeds the limit of ${limit} bytes`,
      "bad_payload",
      413,
    );
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    await req.body?.cancel().catch(() => {});
    throw tooLarge(declared.trim());
  }
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, timeout);
  const late = () =>
    new GatewayError(`The request body did not arrive within ${timeout} ms`, "timeout", 408);
  try {
    let first: Uint8Array | undefined;
    let chunks: Uint8Array[] | undefined;
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (timedOut) throw late();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw tooLarge(`more than ${limit}`);
      }
      if (first === undefined) first = value;
      else (chunks ??= [first]).push(value);
    }
    if (chunks === undefined) return first ?? new Uint8Array(0);
    const out = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    if (timedOut) throw late();
    // the client closed the connection mid-body (or sent a malformed chunked body)
    throw new GatewayError("The request body was cut off", "bad_payload", 400);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Decodes a payload by its `Content-Type`: JSON (`application/json`, `…+json`) or MessagePack;
 * an empty body is `undefined`. Bad bytes are `bad_payload` (400). A body without a
 * `Content-Type`, or with another one, is 415: a web page can send `text/plain` or a form to
 * any origin without a CORS preflight, but not JSON, so taking such bodies as JSON would let
 * any page call a handler.
 */
export function decodeBody(bytes: Uint8Array, contentType: string | null | undefined): unknown {
  if (bytes.byteLength === 0) return undefined;
  const type = mediaType(contentType);
  if (type === "application/json" || type.endsWith("+json")) return json.decode(bytes);
  if (isMsgpack(type)) return msgpack.decode(bytes);
  throw new GatewayError(
    type === ""
      ? "A request body needs a Content-Type: application/json or application/msgpack"
      : `Content-Type "${type}" is not supported: send application/json or application/msgpack`,
    "bad_payload",
    415,
  );
}

/** Encodes a reply for the request's `Accept`: MessagePack when asked for, else JSON. */
export function encodeReply(value: unknown, accept: string | null | undefined): {
  body: Uint8Array;
  contentType: string;
} {
  const wanted = (accept ?? "").split(",").map(mediaType);
  const codec = wanted.some(isMsgpack) && !wanted.includes("application/json") ? msgpack : json;
  return { body: codec.encode(value), contentType: codec.contentType };
}
