/**
 * The wire form of messages between nodes: metadata in headers, the payload as the body,
 * encoded with the codec its content type names.
 *
 * @module
 */

import { BadPayloadError, fromWireError, toWireError, type WireError } from "../errors.ts";
import type { Codec } from "../codec/types.ts";
import type { MeshHeaders, MeshMessage } from "./types.ts";

/** The kind of a message. */
export type MessageKind = "ask" | "tell" | "stream";

/**
 * Header names. A request carries its whole envelope in one header, `tr`: fields joined by
 * `;` (`kind;type;id;handler;timeout;content-type;idempotency-key;chain;token;stream;input;trace`), each
 * percent-encoded, the chain's turn ids joined by `,`. One header instead of ten keeps the
 * per-message cost of NATS headers low. Replies carry no header when they succeed (the body is
 * in the request's content type), `tr-status: error` when they fail, and `tr-status: retry`
 * when the node refused the message before processing it (it is closing): the caller may send
 * it again elsewhere. That signal is protocol, never part of a handler's error.
 */
export const H = {
  envelope: "tr",
  status: "tr-status",
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
  /** Idempotency key. */
  idempotencyKey?: string;
  /** Call chain. */
  chain: string[];
  /** Caller token. */
  token?: string;
  /** Where a stream's items go (for streams). */
  streamTo?: string;
  /** Where the caller of an input stream takes credit (the payload is a stream). */
  inputFrom?: string;
  /** The sender's W3C trace context (`traceparent`, then a space and `tracestate`). */
  trace?: string;
}

const SAFE_FIELD = /^[A-Za-z0-9_.:/@+=#-]*$/;
const enc = (v: string) => SAFE_FIELD.test(v) ? v : encodeURIComponent(v);
/** Only fields that `enc` escaped contain `%`: the others are taken as they are. */
const dec = (v: string) => v.includes("%") ? decodeURIComponent(v) : v;

/** Builds request headers. */
export function requestHeaders(r: WireRequest): MeshHeaders {
  const fields = [
    r.kind,
    enc(r.type),
    enc(r.id),
    enc(r.handler),
    String(Math.max(1, Math.round(r.timeout))),
    r.contentType === DEFAULT_CT ? "" : enc(r.contentType),
    r.idempotencyKey === undefined ? "" : "=" + enc(r.idempotencyKey),
    r.chain.map(enc).join(","),
    r.token === undefined ? "" : enc(r.token),
    r.streamTo === undefined ? "" : enc(r.streamTo),
    r.inputFrom === undefined ? "" : enc(r.inputFrom),
    r.trace === undefined ? "" : enc(r.trace),
  ];
  let n = fields.length;
  while (n > 5 && fields[n - 1] === "") n--;
  return { [H.envelope]: fields.slice(0, n).join(";") };
}

const DEFAULT_CT = "application/msgpack";
/** Longest timeout a message may carry, ms (24 h); longer ones, `Infinity` included, are cut to it. */
export const MAX_TIMEOUT_MS = 24 * 3600_000;
const KINDS = new Set(["ask", "tell", "stream"]);

/** Parses request headers; throws `BadPayloadError` for malformed ones. */
export function parseRequest(headers: MeshHeaders): WireRequest {
  const raw = headers[H.envelope];
  if (raw === undefined || raw.length > 16_384) {
    throw new BadPayloadError("Message envelope header is missing or too long");
  }
  const f = raw.split(";");
  const [kind, type, id, handler, timeoutText] = f;
  const timeout = Number(timeoutText);
  if (!kind || !KINDS.has(kind) || !type || id === undefined || handler === undefined) {
    throw new BadPayloadError("Message envelope header is malformed");
  }
  if (Number.isNaN(timeout) || timeout <= 0) {
    throw new BadPayloadError(`Message timeout "${timeoutText}" is not valid`);
  }
  try {
    const r: WireRequest = {
      kind: kind as MessageKind,
      type: dec(type),
      id: dec(id),
      handler: dec(handler),
      timeout: Math.min(timeout, MAX_TIMEOUT_MS),
      contentType: f[5] ? dec(f[5]) : DEFAULT_CT,
      chain: f[7] ? f[7].split(",").map(dec) : [],
    };
    if (f[6]) r.idempotencyKey = dec(f[6].slice(1));
    if (f[8]) r.token = dec(f[8]);
    if (f[9]) r.streamTo = dec(f[9]);
    if (f[10]) r.inputFrom = dec(f[10]);
    if (f[11]) r.trace = dec(f[11]);
    return r;
  } catch (err) {
    throw new BadPayloadError("Message envelope header is not valid percent-encoded text", {
      cause: err,
    });
  }
}

/** Encodes a successful reply (in the request's content type, so without headers). */
export function okReply(codec: Codec, value: unknown): { data: Uint8Array; headers?: MeshHeaders } {
  return { data: codec.encode(value) };
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

/** Encodes a "not processed, send it elsewhere" reply. */
export function retryReply(codec: Codec, why: string): { data: Uint8Array; headers: MeshHeaders } {
  return {
    data: codec.encode({ code: "unavailable", message: why }),
    headers: { [H.status]: "retry", [H.contentType]: codec.contentType },
  };
}

/** Encodes an error reply. */
export function errorReply(
  codec: Codec,
  err: unknown,
  onMasked?: (err: unknown) => void,
): { data: Uint8Array; headers: MeshHeaders } {
  const w: WireError = toWireError(err, onMasked);
  let data: Uint8Array;
  try {
    data = codec.encode(w);
  } catch {
    data = codec.encode({ code: w.code, message: w.message });
  }
  return { data, headers: { [H.status]: "error", [H.contentType]: codec.contentType } };
}

/** Decodes a reply: returns the value or throws the error it carries. */
export function decodeReply(
  msg: MeshMessage,
  codecFor: (ct: string) => Codec | undefined,
  requestContentType: string = DEFAULT_CT,
): unknown {
  const ct = msg.headers[H.contentType] ?? requestContentType;
  const codec = codecFor(ct);
  if (!codec) throw new BadPayloadError(`Reply has unknown content type "${ct}"`);
  const value = codec.decode(msg.data);
  const status = msg.headers[H.status];
  if (status === "retry") {
    const w = value as { message?: unknown } | null;
    throw new NotProcessed(typeof w?.message === "string" ? w.message : "Not processed");
  }
  if (status === "error") {
    const w = value as Partial<WireError> | null;
    throw fromWireError({
      code: typeof w?.code === "string" ? w.code : "internal",
      message: typeof w?.message === "string" ? w.message : "Remote error",
      ...(w !== null && typeof w === "object" && "data" in w ? { data: w.data } : {}),
    });
  }
  return value;
}
