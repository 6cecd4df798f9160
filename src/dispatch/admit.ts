/**
 * The one check every message passes on the node that runs its handler, whether it came from
 * a local ref or over the mesh: the target's name bounds, the handler exists and is called the
 * right way, and the payload fits. (Access rules join here.)
 *
 * @module
 */

import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import { sizeLowerBound } from "../codec/size.ts";
import { BadPayloadError, UnknownHandlerError } from "../errors.ts";
import type { Call } from "./call.ts";

/** Longest actor id, in UTF-8 bytes (ids become NATS subject tokens and KV keys). */
export const MAX_ID_BYTES = 256;
/** Longest actor type name, in characters. */
export const MAX_TYPE_LENGTH = 64;
/** Longest handler name, in characters. */
export const MAX_HANDLER_LENGTH = 128;
/** Longest idempotency key, in UTF-8 bytes. */
export const MAX_IDEMPOTENCY_KEY_BYTES = 256;

const utf8 = new TextEncoder();

/**
 * Why a target name cannot be used, or undefined: ids of at most {@link MAX_ID_BYTES} UTF-8
 * bytes, type names of at most {@link MAX_TYPE_LENGTH} characters. Checked by the caller before
 * anything is sent (a long subject makes nats-server close the connection) and again by the
 * node that runs the handler.
 */
export function checkTarget(type: string, id: string): BadPayloadError | undefined {
  if (type.length > MAX_TYPE_LENGTH) {
    return new BadPayloadError(
      `Actor type name of ${type.length} characters exceeds the limit of ${MAX_TYPE_LENGTH}`,
    );
  }
  // A UTF-8 byte is at most one UTF-16 unit; only long strings need the exact count.
  if (id.length * 3 > MAX_ID_BYTES && utf8.encode(id).byteLength > MAX_ID_BYTES) {
    return new BadPayloadError(
      `Actor id of ${utf8.encode(id).byteLength} bytes exceeds the limit of ${MAX_ID_BYTES} bytes`,
    );
  }
  return undefined;
}

/** Why an idempotency key cannot be used (over {@link MAX_IDEMPOTENCY_KEY_BYTES}), or undefined. */
export function checkIdempotencyKey(key: string | undefined): BadPayloadError | undefined {
  if (key === undefined || key.length * 3 <= MAX_IDEMPOTENCY_KEY_BYTES) return undefined;
  const bytes = utf8.encode(key).byteLength;
  if (bytes <= MAX_IDEMPOTENCY_KEY_BYTES) return undefined;
  return new BadPayloadError(
    `Idempotency key of ${bytes} bytes exceeds the limit of ${MAX_IDEMPOTENCY_KEY_BYTES} bytes`,
  );
}

/**
 * Admits a call to a hosted type, or says why not: the error the caller gets, with nothing
 * activated and nothing written.
 */
export function admit(
  def: ActorDefinition<AnyActorTypes>,
  call: Call,
  maxPayload: number,
): Error | undefined {
  const bad = checkTarget(call.type, call.id) ?? checkIdempotencyKey(call.rawIdempotencyKey);
  if (bad) return bad;
  // A message from the mesh has its encoded size; a local one is bounded without encoding it.
  const size = call.size ?? (call.input ? 0 : sizeLowerBound(call.payload, maxPayload));
  if (size > maxPayload) {
    return new BadPayloadError(
      `Payload of ${def.name}.${call.handler} (${size} bytes) exceeds the limit of ${maxPayload} bytes`,
    );
  }
  if (call.handler.length > MAX_HANDLER_LENGTH || !Object.hasOwn(def.handlers, call.handler)) {
    return new UnknownHandlerError(
      `Actor type "${def.name}" has no handler "${call.handler.slice(0, MAX_HANDLER_LENGTH)}"`,
    );
  }
  const streaming = def.streaming.has(call.handler);
  if (streaming !== (call.kind === "stream")) {
    return new UnknownHandlerError(
      streaming
        ? `Handler "${def.name}.${call.handler}" is a streaming handler: call it with ref.stream()`
        : `Handler "${def.name}.${call.handler}" is not a streaming handler: call it with ask/tell`,
    );
  }
  return undefined;
}
