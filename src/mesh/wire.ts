/**
 * The wire form of messages between nodes: metadata in headers, the payload as the body,
 * encoded with the codec its content type names.
 *
 * @module
 */

import { BadPayloadError, fromWireError, toWireError, type WireError } from "../errors.ts";
import type { Codec } from "../codec/types.ts";
import type { MeshHeaders, MeshMessage } from "./types.ts";
import type { MessageKind } from "../actor/ref.ts";

/** Header names. */
export const H = {
  kind: "tr-kind",
  type: "tr-type",
  id: "tr-id",
  handler: "tr-handler",
  contentType: "tr-ct",
  timeout: "tr-timeout",
  idempotencyKey: "tr-idem",
  chain: "tr-chain",
  token: "tr-token",
  status: "tr-status",
  stream: "tr-stream",
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
}

/** Builds request headers. */
export function requestHeaders(r: WireRequest): MeshHeaders {
  const h: MeshHeaders = {
    [H.kind]: r.kind,
    [H.type]: r.type,
    [H.id]: encodeURIComponent(r.id),
    [H.handler]: encodeURIComponent(r.handler),
    [H.contentType]: r.contentType,
    [H.timeout]: String(Math.max(1, Math.round(r.timeout))),
  };
  if (r.idempotencyKey !== undefined) h[H.idempotencyKey] = encodeURIComponent(r.idempotencyKey);
  if (r.chain.length > 0) h[H.chain] = r.chain.map(encodeURIComponent).join(",");
  if (r.token !== undefined) h[H.token] = r.token;
  if (r.streamTo !== undefined) h[H.stream] = r.streamTo;
  return h;
}

const KINDS = new Set(["ask", "tell", "stream"]);

/** Parses request headers; throws `BadPayloadError` for malformed ones. */
export function parseRequest(headers: MeshHeaders): WireRequest {
  const kind = headers[H.kind];
  const type = headers[H.type];
  const id = headers[H.id];
  const handler = headers[H.handler];
  const timeout = Number(headers[H.timeout]);
  if (!kind || !KINDS.has(kind) || !type || id === undefined || handler === undefined) {
    throw new BadPayloadError("Message headers are missing or malformed");
  }
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new BadPayloadError(`Message timeout header "${headers[H.timeout]}" is not valid`);
  }
  try {
    const r: WireRequest = {
      kind: kind as MessageKind,
      type,
      id: decodeURIComponent(id),
      handler: decodeURIComponent(handler),
      timeout: Math.min(timeout, 24 * 3600_000),
      contentType: headers[H.contentType] ?? "application/msgpack",
      chain: headers[H.chain] ? headers[H.chain]!.split(",").map(decodeURIComponent) : [],
    };
    const idem = headers[H.idempotencyKey];
    if (idem !== undefined) r.idempotencyKey = decodeURIComponent(idem);
    const token = headers[H.token];
    if (token !== undefined) r.token = token;
    const stream = headers[H.stream];
    if (stream !== undefined) r.streamTo = stream;
    return r;
  } catch (err) {
    throw new BadPayloadError("Message headers are not valid URI-encoded text", { cause: err });
  }
}

/** Encodes a successful reply. */
export function okReply(codec: Codec, value: unknown): { data: Uint8Array; headers: MeshHeaders } {
  return {
    data: codec.encode(value),
    headers: { [H.status]: "ok", [H.contentType]: codec.contentType },
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
): unknown {
  const ct = msg.headers[H.contentType] ?? "application/msgpack";
  const codec = codecFor(ct);
  if (!codec) throw new BadPayloadError(`Reply has unknown content type "${ct}"`);
  const value = codec.decode(msg.data);
  if (msg.headers[H.status] === "error") {
    const w = value as Partial<WireError> | null;
    throw fromWireError({
      code: typeof w?.code === "string" ? w.code : "internal",
      message: typeof w?.message === "string" ? w.message : "Remote error",
      ...(w && "data" in w ? { data: w.data } : {}),
    });
  }
  return value;
}
