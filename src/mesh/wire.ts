/**
 * The wire form of requests and replies between nodes: one binary envelope at the start of the
 * message body, then the payload, encoded with the codec its content type names. No NATS
 * headers: a header block costs a parse and a map on both sides of every message.
 *
 * Request body (all integers unsigned; `str` = varint byte length + UTF-8 bytes):
 *
 * | bytes  | field                                                                         |
 * | ------ | ----------------------------------------------------------------------------- |
 * | 1      | version (`1`)                                                                 |
 * | 1      | kind: 0 ask, 1 tell, 2 stream                                                 |
 * | 1      | flags: which optional fields follow (bit 0 idempotency key, 1 token, 2 stream |
 * |        | inbox, 3 input inbox, 4 trace context, 5 call chain, 6 content type string)   |
 * | 1      | content type: 0 MessagePack, 1 JSON (bit 6 unset)                             |
 * | varint | timeout: ms left until the caller's deadline (receivers set their own)        |
 * | str ×3 | type, id, handler                                                             |
 * | str…   | the optional fields, in flag order; the chain is a varint count of `str`s     |
 * | rest   | the payload                                                                   |
 *
 * Reply body: one status byte, then a value in the request's content type: `0` ok (the
 * handler's result), `1` error (`{ code, message, data? }`), `2` retry (`{ message }`: refused
 * before any processing, send it again elsewhere), `3` redirect (`{ node, revision }`: another
 * live node owns the actor; nothing ran). Protocol signals live in the status, never in a
 * handler's data.
 *
 * @module
 */

import { BadPayloadError, fromWireError, toWireError, type WireError } from "../errors.ts";
import type { Codec } from "../codec/types.ts";

/** The kind of a message. */
export type MessageKind = "ask" | "tell" | "stream";

/** Header names still in use: pub/sub messages carry their content type in `tr-ct`. */
export const H = {
  contentType: "tr-ct",
} as const;

/** A decoded inbound request. */
export interface WireRequest {
  /** Message kind. */
  kind: MessageKind;
  /** Actor type. */
  type: string;
  /** Actor id. */
  id: string;
  /** Handler. */
  handler: string;
  /** Remaining ms until the caller's deadline. */
  timeout: number;
  /** Content type. */
  contentType: string;
  /** Idempotency key, as the caller gave it (the receiver scopes it by the verified caller). */
  idempotencyKey?: string;
  /** Call chain. */
  chain: readonly string[];
  /** Caller token. */
  token?: string;
  /** Where a stream's items go (for streams). */
  streamTo?: string;
  /** Where the caller of an input stream takes credit (the payload is a stream). */
  inputFrom?: string;
  /** W3C trace context: `traceparent`, then a space and `tracestate` when there is one. */
  trace?: string;
}

/** Longest timeout a message may carry, ms (24 h); longer ones, `Infinity` included, are cut to it. */
export const MAX_TIMEOUT_MS = 24 * 3600_000;
/** Longest envelope accepted, bytes (tokens included). */
export const MAX_ENVELOPE_BYTES = 16_384;

const VERSION = 1;
const NO_CHAIN: readonly string[] = Object.freeze([]);
const KINDS: readonly MessageKind[] = ["ask", "tell", "stream"];
const MSGPACK = "application/msgpack";
const JSON_CT = "application/json";
const F_KEY = 1, F_TOKEN = 2, F_STREAM = 4, F_INPUT = 8, F_TRACE = 16, F_CHAIN = 32, F_CT = 64;

// ---- writing -------------------------------------------------------------------------------

let scratch = new Uint8Array(512);
let at = 0;
const utf8 = new TextEncoder();

function room(n: number): void {
  if (at + n <= scratch.length) return;
  let size = scratch.length * 2;
  while (size < at + n) size *= 2;
  const next = new Uint8Array(size);
  next.set(scratch.subarray(0, at));
  scratch = next;
}

function writeVarint(v: number): void {
  room(10);
  while (v >= 0x80) {
    scratch[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  scratch[at++] = v;
}

function writeStr(s: string): void {
  const n = s.length;
  // ASCII, the common case, is copied by hand: no encoder call for a short string.
  if (n < 128) {
    room(n + 1);
    let ascii = true;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) {
        ascii = false;
        break;
      }
      scratch[at + 1 + i] = c;
    }
    if (ascii) {
      scratch[at] = n;
      at += n + 1;
      return;
    }
  }
  const max = n * 3;
  room(max + 10);
  // Encode after the largest varint the length could need, then move it down if shorter.
  const lenBytes = max < 0x80 ? 1 : max < 0x4000 ? 2 : 3;
  const { written } = utf8.encodeInto(s, scratch.subarray(at + lenBytes));
  const start = at;
  writeVarint(written);
  if (at - start !== lenBytes) scratch.copyWithin(at, start + lenBytes, start + lenBytes + written);
  at += written;
}

/** The request's envelope bytes (valid until the next call). */
function envelope(r: WireRequest): Uint8Array {
  at = 0;
  const ct = r.contentType === MSGPACK ? 0 : r.contentType === JSON_CT ? 1 : -1;
  let flags = 0;
  if (r.idempotencyKey !== undefined) flags |= F_KEY;
  if (r.token !== undefined) flags |= F_TOKEN;
  if (r.streamTo !== undefined) flags |= F_STREAM;
  if (r.inputFrom !== undefined) flags |= F_INPUT;
  if (r.trace !== undefined) flags |= F_TRACE;
  if (r.chain.length > 0) flags |= F_CHAIN;
  if (ct < 0) flags |= F_CT;
  room(4);
  scratch[0] = VERSION;
  scratch[1] = KINDS.indexOf(r.kind);
  scratch[2] = flags;
  scratch[3] = ct < 0 ? 0 : ct;
  at = 4;
  writeVarint(Math.min(MAX_TIMEOUT_MS, Math.max(1, Math.round(r.timeout))));
  writeStr(r.type);
  writeStr(r.id);
  writeStr(r.handler);
  if (flags & F_KEY) writeStr(r.idempotencyKey!);
  if (flags & F_TOKEN) writeStr(r.token!);
  if (flags & F_STREAM) writeStr(r.streamTo!);
  if (flags & F_INPUT) writeStr(r.inputFrom!);
  if (flags & F_TRACE) writeStr(r.trace!);
  if (flags & F_CHAIN) {
    writeVarint(r.chain.length);
    for (const c of r.chain) writeStr(c);
  }
  if (flags & F_CT) writeStr(r.contentType);
  return scratch.subarray(0, at);
}

/** A codec that can write a value after a prefix into one fresh array (one copy). */
interface PrefixedCodec extends Codec {
  encodePrefixed(prefix: Uint8Array, value: unknown): Uint8Array;
}

/** `prefix` then `codec.encode(value)`, in one fresh array. */
export function encodeAfter(codec: Codec, prefix: Uint8Array, value: unknown): Uint8Array {
  if ("encodePrefixed" in codec) return (codec as PrefixedCodec).encodePrefixed(prefix, value);
  const body = codec.encode(value);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix);
  out.set(body, prefix.length);
  return out;
}

/**
 * Encodes a request: its envelope, then `payload` encoded with `codec` (whose content type is
 * `r.contentType`), and where the payload starts in it. Throws `BadPayloadError` for a payload
 * the codec cannot carry.
 */
export function encodeRequest(
  r: WireRequest,
  codec: Codec,
  payload: unknown,
): { body: Uint8Array; payloadStart: number } {
  const head = envelope(r);
  return { body: encodeAfter(codec, head, payload), payloadStart: head.length };
}

/** A request's envelope followed by already encoded payload bytes (a resend). */
export function encodeRequestBytes(r: WireRequest, payload: Uint8Array): Uint8Array {
  const head = envelope(r);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  out.set(payload, head.length);
  return out;
}

// ---- reading -------------------------------------------------------------------------------

let src: Uint8Array = new Uint8Array(0);
let pos = 0;
const utf8in = new TextDecoder("utf-8", { fatal: true });

function bad(why: string): never {
  throw new BadPayloadError(`Message envelope is malformed: ${why}`);
}

function readVarint(): number {
  let v = 0;
  let scale = 1;
  for (let i = 0; i < 8; i++) {
    if (pos >= src.length) bad("it ends early");
    const b = src[pos++]!;
    v += (b & 0x7f) * scale;
    if (b < 0x80) return v;
    scale *= 0x80;
  }
  return bad("a length is too long");
}

function readStr(): string {
  const n = readVarint();
  if (pos + n > src.length) bad("a field runs past its end");
  const start = pos;
  pos += n;
  if (n < 64) {
    let s = "";
    for (let i = start; i < pos; i++) {
      const c = src[i]!;
      if (c > 0x7f) return decodeText(start, pos);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decodeText(start, pos);
}

function decodeText(start: number, end: number): string {
  try {
    return utf8in.decode(src.subarray(start, end));
  } catch {
    return bad("a field is not valid UTF-8");
  }
}

/**
 * Decodes a request body: the envelope, and where the payload starts. Throws
 * `BadPayloadError` for anything malformed (the sender may be any NATS client).
 */
export function decodeRequest(body: Uint8Array): { req: WireRequest; offset: number } {
  src = body;
  pos = 4;
  try {
    if (body.length < 4 || body[0] !== VERSION) bad("unknown version");
    const kind = KINDS[body[1]!];
    if (kind === undefined) bad("unknown kind");
    const flags = body[2]!;
    if (flags & 0x80) bad("unknown flags");
    const ctCode = body[3]!;
    const timeout = readVarint();
    if (timeout <= 0) bad(`timeout ${timeout} is not valid`);
    const req: WireRequest = {
      kind,
      type: readStr(),
      id: readStr(),
      handler: readStr(),
      timeout: Math.min(timeout, MAX_TIMEOUT_MS),
      contentType: ctCode === 0 ? MSGPACK : ctCode === 1 ? JSON_CT : bad("unknown content type"),
      chain: NO_CHAIN,
    };
    if (flags & F_KEY) req.idempotencyKey = readStr();
    if (flags & F_TOKEN) req.token = readStr();
    if (flags & F_STREAM) req.streamTo = readStr();
    if (flags & F_INPUT) req.inputFrom = readStr();
    if (flags & F_TRACE) req.trace = readStr();
    if (flags & F_CHAIN) {
      const n = readVarint();
      if (n > 256) bad("the call chain is too long");
      const chain: string[] = [];
      for (let i = 0; i < n; i++) chain.push(readStr());
      req.chain = chain;
    }
    if (flags & F_CT) req.contentType = readStr();
    if (pos > MAX_ENVELOPE_BYTES) bad(`it is longer than ${MAX_ENVELOPE_BYTES} bytes`);
    return { req, offset: pos };
  } finally {
    src = new Uint8Array(0);
  }
}

// ---- replies -------------------------------------------------------------------------------

/** The status byte of a reply. */
export const Status = { ok: 0, error: 1, retry: 2, redirect: 3 } as const;

const STATUS_BYTES = [
  Uint8Array.of(Status.ok),
  Uint8Array.of(Status.error),
  Uint8Array.of(Status.retry),
  Uint8Array.of(Status.redirect),
];

/** Encodes a successful reply. */
export function okReply(codec: Codec, value: unknown): Uint8Array {
  return encodeAfter(codec, STATUS_BYTES[Status.ok]!, value);
}

/**
 * Thrown by {@link decodeReply} for a `retry` reply: the node refused the message before
 * processing it, so sending it again elsewhere is safe.
 */
export class NotProcessed extends Error {
  /** Makes the signal; `message` says why the node refused. */
  constructor(message: string) {
    super(message);
    this.name = "NotProcessed";
  }
}

/**
 * Thrown by {@link decodeReply} for a `redirect` reply: another live node owns the actor and
 * nothing ran here; the caller sends the message there.
 */
export class Redirected extends Error {
  /** The owner and the revision of its ownership (higher is newer). */
  constructor(readonly node: string, readonly revision: number) {
    super(`The actor is owned by node "${node}"`);
    this.name = "Redirected";
  }
}

/** Encodes a "not processed, send it elsewhere" reply. */
export function retryReply(codec: Codec, why: string): Uint8Array {
  return encodeAfter(codec, STATUS_BYTES[Status.retry]!, { message: why });
}

/** Encodes a "the actor lives on `node`, nothing ran" reply. */
export function redirectReply(codec: Codec, node: string, revision: number): Uint8Array {
  return encodeAfter(codec, STATUS_BYTES[Status.redirect]!, { node, revision });
}

/** Encodes an error reply (internal errors masked, reported to `onMasked`). */
export function errorReply(
  codec: Codec,
  err: unknown,
  onMasked?: (err: unknown) => void,
): Uint8Array {
  const w: WireError = toWireError(err, onMasked);
  try {
    return encodeAfter(codec, STATUS_BYTES[Status.error]!, w);
  } catch {
    return encodeAfter(codec, STATUS_BYTES[Status.error]!, { code: w.code, message: w.message });
  }
}

/** The error a decoded `{ code, message, data? }` value stands for. */
export function wireErrorOf(value: unknown): Error {
  const w = value as Partial<WireError> | null;
  return fromWireError({
    code: typeof w?.code === "string" ? w.code : "internal",
    message: typeof w?.message === "string" ? w.message : "Remote error",
    ...(w !== null && typeof w === "object" && "data" in w ? { data: w.data } : {}),
  });
}

/**
 * Decodes a reply body with the request's codec: returns the value, or throws the error it
 * carries ({@link NotProcessed} for retry, {@link Redirected} for redirect).
 */
export function decodeReply(body: Uint8Array, codec: Codec): unknown {
  if (body.length === 0) throw new BadPayloadError("Reply is empty");
  const status = body[0];
  const value = codec.decode(body.subarray(1));
  switch (status) {
    case Status.ok:
      return value;
    case Status.error:
      throw wireErrorOf(value);
    case Status.retry: {
      const w = value as { message?: unknown } | null;
      throw new NotProcessed(typeof w?.message === "string" ? w.message : "Not processed");
    }
    case Status.redirect: {
      const r = value as { node?: unknown; revision?: unknown } | null;
      if (typeof r?.node !== "string" || typeof r.revision !== "number") {
        throw new BadPayloadError("Redirect reply is malformed");
      }
      throw new Redirected(r.node, r.revision);
    }
    default:
      throw new BadPayloadError(`Reply has an unknown status ${status}`);
  }
}
