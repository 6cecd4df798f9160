/**
 * Raw requests in Troupe's wire format, as a foreign NATS client (or an attacker) would send
 * them: tests build envelopes with these instead of going through a ref.
 *
 * @module
 */

import { msgpack } from "../src/codec/msgpack.ts";
import type { MeshConnection } from "../src/mesh/types.ts";
import { encodeRequestBytes, type WireRequest } from "../src/mesh/wire.ts";

/** An envelope's fields; the unset ones get harmless defaults. */
export type RawEnvelope = Partial<WireRequest> & { type: string; handler: string };

/** A request body: the envelope of `e`, then `payload` (bytes, sent as they are). */
export function rawBody(e: RawEnvelope, payload: Uint8Array = msgpack.encode(null)): Uint8Array {
  return encodeRequestBytes({
    kind: "ask",
    id: "",
    timeout: 5_000,
    contentType: "application/msgpack",
    chain: [],
    ...e,
  }, payload);
}

/** What a raw reply says: its status and the value it carries (decoded as MessagePack). */
export interface RawReply {
  readonly status: "ok" | "error" | "retry" | "redirect";
  readonly value: unknown;
}

const STATUS = ["ok", "error", "retry", "redirect"] as const;

/** Sends a raw request body to `subject` and decodes the reply. */
export async function rawRequest(
  conn: MeshConnection,
  subject: string,
  body: Uint8Array,
  timeout = 5_000,
): Promise<RawReply> {
  const reply = await conn.request(subject, body, { timeout });
  const status = STATUS[reply.data[0]!];
  if (status === undefined) throw new Error(`Unknown reply status ${reply.data[0]}`);
  return { status, value: msgpack.decode(reply.data.subarray(1)) };
}

/** The error code of a raw reply (throws when it is not an error). */
export function codeOf(reply: RawReply): string {
  if (reply.status !== "error") throw new Error(`Expected an error reply, got ${reply.status}`);
  return (reply.value as { code: string }).code;
}
