/**
 * Request bodies: read with a byte limit (before reading it all), decoded by content type
 * (JSON or MessagePack); replies encoded as JSON (or MessagePack when asked for). JSON is
 * Troupe's JSON codec: plain JSON as itself, and `$`-tagged objects for what JSON has no form
 * for (bigint, Date, Map, Set, bytes), so a typed client gets those values back.
 *
 * @module
 */

import { fromJsonValue, json, jsonSyntaxError, msgpack, toJsonTree } from "../../spi.ts";
import { GatewayError } from "./_errors.ts";
import type { Deadline, Deadlines } from "./_limits.ts";

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
 * Reads a request body within the time `deadlines` gives (then `408 timeout`: a client that
 * sends a byte a second must not hold a request for ever), refusing it with 413 as soon as it
 * is known to be larger than `limit`: from `Content-Length` before reading anything, else
 * while counting the streamed bytes. A body the client cut off is `400 bad_payload`, never an
 * internal error.
 */
export async function readBody(
  req: Request,
  limit: number,
  deadlines: Deadlines,
): Promise<Uint8Array> {
  const tooLarge = (size: string) =>
    new GatewayError(
      `Request body of ${size} bytes exceeds the limit of ${limit} bytes`,
      "bad_payload",
      413,
    );
  const declared = req.headers.get("content-length");
  if (declared !== null) {
    if (Number(declared) > limit) {
      await req.body?.cancel().catch(() => {});
      throw tooLarge(declared.trim());
    }
    // the server delivers no more than the declared length: read it whole (Deno's fast path
    // when it has arrived with the head), racing the deadline
    if (declared.trim() === "0") return new Uint8Array(0);
    return new Uint8Array(await within(req.arrayBuffer(), deadlines));
  }
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  let late: unknown;
  const deadline = deadlines.add((err) => {
    late = err;
    reader.cancel().catch(() => {});
  });
  try {
    let first: Uint8Array | undefined;
    let chunks: Uint8Array[] | undefined;
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (late !== undefined) throw late;
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
    if (late !== undefined) throw late;
    throw cut(); // the client closed the connection mid-body, or a malformed chunked body
  } finally {
    deadlines.remove(deadline);
  }
}

function cut(): GatewayError {
  return new GatewayError("The request body was cut off", "bad_payload", 400);
}

/**
 * `read`, unless the deadline comes first (its error, a 408). After a 408 the connection is
 * closed, which ends the read left behind.
 */
function within<T>(read: Promise<T>, deadlines: Deadlines): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const deadline = deadlines.add(reject);
    read.then((value) => {
      deadlines.remove(deadline);
      resolve(value);
    }, () => {
      deadlines.remove(deadline);
      reject(cut());
    });
  });
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
  throw unsupported(type);
}

/**
 * Reads and decodes the payload of a request: JSON with a `Content-Length` is read with
 * `Request.json()` (Deno parses a body that came with the request's head at once, without a
 * byte copy or a stream), anything else as bytes by {@link readBody}; an empty body is
 * `undefined`. A body of an unsupported type is refused (415) before it is read.
 */
export function readPayload(
  req: Request,
  headers: { get(name: string): string | null },
  limit: number,
  deadlines: Deadlines,
): unknown | Promise<unknown> {
  // `req.body` is not touched on the way of a body with a length: making its stream costs
  // Deno's fast path (the whole body taken at once) and ~10 µs a request
  const declared = headers.get("content-length");
  if (declared === "0" || (declared === null && req.body === null)) return undefined;
  const type = mediaType(headers.get("content-type"));
  const isJson = type === "application/json" || type.endsWith("+json");
  if (!isJson && !isMsgpack(type)) return refuse(req, unsupported(type));
  if (!isJson || declared === null) {
    return readBody(req, limit, deadlines).then((bytes) => decodeBody(bytes, type));
  }
  const size = Number(declared);
  if (size > limit) {
    return refuse(
      req,
      new GatewayError(
        `Request body of ${declared.trim()} bytes exceeds the limit of ${limit} bytes`,
        "bad_payload",
        413,
      ),
    );
  }
  if (size === 0) return undefined; // "00" and the like
  // invalid UTF-8 becomes U+FFFD, as in any text read of a body
  return jsonBody(req.json(), deadlines);
}

/**
 * The payload of a JSON body being parsed (`Request.json()`). A body that arrived with the
 * request's head is parsed at once (Deno's whole-body fast path: the promise is settled, its
 * reaction runs before the next turn): it needs no deadline. Only a body still on its way gets
 * one, which costs more than the look.
 */
function jsonBody(parsed: Promise<unknown>, deadlines: Deadlines): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let deadline: Deadline | undefined;
    let settled = false;
    parsed.then((value) => {
      settled = true;
      if (deadline !== undefined) deadlines.remove(deadline);
      try {
        resolve(fromJsonValue(value));
      } catch (err) {
        reject(err);
      }
    }, (err) => {
      settled = true;
      if (deadline !== undefined) deadlines.remove(deadline);
      reject(err instanceof SyntaxError ? badJson(err) : cut());
    });
    queueMicrotask(() => {
      if (!settled) deadline = deadlines.add(reject);
    });
  });
}

/**
 * The error of a JSON body that does not parse. Deno's whole-body fast path parses the text as
 * it came, so a body that starts with a byte order mark (which RFC 8259 forbids a sender to add;
 * `text()` and Deno's other path drop it) is refused, with a message that names it (V8's shows
 * the mark, which is invisible).
 */
function badJson(err: SyntaxError): Error {
  return err.message.startsWith("Unexpected token '\uFEFF', \"\uFEFF")
    ? new GatewayError(
      "A JSON body must not start with a byte order mark (U+FEFF): send it without",
      "bad_payload",
    )
    : jsonSyntaxError(err);
}

/** Drops the body and rejects with `err`. */
async function refuse(req: Request, err: GatewayError): Promise<never> {
  await req.body?.cancel().catch(() => {});
  throw err;
}

function unsupported(type: string): GatewayError {
  return new GatewayError(
    type === ""
      ? "A request body needs a Content-Type: application/json or application/msgpack"
      : `Content-Type "${type}" is not supported: send application/json or application/msgpack`,
    "bad_payload",
    415,
  );
}

/**
 * The `200` response of a reply, for the request's `Accept`: MessagePack when asked for, else
 * JSON. `Response.json()` of the tagged tree: Deno's cheapest response (the text goes to the
 * server as it is, without a body object or a header list to make).
 */
export function replyResponse(value: unknown, accept: string | null): Response {
  if (accept !== null && accept.includes("msgpack")) {
    const wanted = accept.split(",").map(mediaType);
    if (wanted.some(isMsgpack) && !wanted.includes("application/json")) {
      return new Response(msgpack.encode(value) as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": msgpack.contentType },
      });
    }
  }
  return Response.json(toJsonTree(value));
}
