/**
 * Helpers shared by the NATS mesh's modules: retries, the mapping of NATS client errors to
 * {@link MeshError}, subject checks and header conversion. Internal: not exported from
 * `mod.ts`.
 *
 * @module
 */

import {
  errors as natsErrors,
  headers as natsHeaders,
  type Msg,
  type MsgHdrs,
} from "@nats-io/nats-core";
import { JetStreamApiError } from "@nats-io/jetstream";
import {
  delay,
  isValidSubject,
  MeshError,
  type MeshHeaders,
  type MeshMessage,
  systemClock,
} from "../../spi.ts";

/** Delay before retry number `attempt` (from 0), in ms: exponential up to 1 s, jittered. */
export function backoff(attempt: number): number {
  const base = Math.min(1000, 50 * 2 ** attempt);
  return base / 2 + Math.random() * base / 2;
}

/**
 * Runs `fn` until it succeeds, retrying (with {@link backoff}) the errors `retryable` accepts
 * until `deadline` (a `performance.now()` time); the last error is mapped by
 * {@link toMeshError}. An aborted `signal` ends the pause between tries at once (with the
 * last error): nothing is left waiting when its owner stops.
 */
export async function retry<T>(
  fn: () => Promise<T>,
  retryable: (err: unknown) => boolean,
  deadline: number,
  what: string,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 0;; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const left = deadline - performance.now();
      if (!retryable(err) || left <= 0 || signal?.aborted) throw toMeshError(err, what);
      try {
        await delay(systemClock, Math.min(backoff(attempt), left), signal);
      } catch {
        throw toMeshError(err, what); // aborted
      }
    }
  }
}

const WRONG_LAST_SEQ = new Set([10071, 10164]);

/** Whether a JetStream call got no answer because nothing (no stream leader) listened. */
export function isNoResponders(err: unknown): boolean {
  if (err instanceof natsErrors.NoRespondersError) return true;
  if (err instanceof natsErrors.RequestError && err.isNoResponders()) return true;
  if (err instanceof Error && err.name === "JetStreamNotEnabled") return true;
  return false;
}

/** Whether a JetStream call failed for a reason that passes (no leader yet, timeout). */
export function isTemporaryJs(err: unknown): boolean {
  if (isNoResponders(err) || err instanceof natsErrors.TimeoutError) return true;
  if (err instanceof JetStreamApiError) {
    // 10008 cluster not available / temporarily unavailable, 10023 insufficient resources,
    // 10058 created concurrently with another config, 503 no leader
    return [10008, 10023, 10058].includes(err.code) || err.status === 503 ||
      /leader|unavailable|insufficient/i.test(err.message);
  }
  return false;
}

/**
 * {@link isTemporaryJs}, or "stream not found" (10059): what nats-server 2.9.10 may answer
 * to a stream create, or to a stream info just after it, while several nodes of a cluster
 * create the same bucket at once (seen when three node processes started together).
 */
export function isTemporaryBucketOpen(err: unknown): boolean {
  return isTemporaryJs(err) || isStreamNotFound(err);
}

/** Whether a JetStream call failed because the stream does not exist (10059). */
export function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError &&
    (err.code === 10059 || /stream not found/i.test(err.message));
}

/** Maps an error of the NATS client to the mesh's errors (other errors pass through). */
export function toMeshError(err: unknown, what: string): unknown {
  if (err instanceof MeshError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (
    err instanceof natsErrors.ClosedConnectionError ||
    err instanceof natsErrors.DrainingConnectionError
  ) return new MeshError("closed", `${what}: connection closed`, err);
  if (isNoResponders(err)) return new MeshError("no_responders", `${what}: no responders`, err);
  if (err instanceof natsErrors.TimeoutError) {
    return new MeshError("timeout", `${what}: timed out`, err);
  }
  if (err instanceof JetStreamApiError) {
    if (WRONG_LAST_SEQ.has(err.code) || /wrong last sequence/i.test(msg)) {
      return new MeshError("kv_conflict", `${what}: ${msg}`, err);
    }
    if (err.code === 10054 || /maximum (message|payload) size/i.test(msg)) {
      return new MeshError("max_payload", `${what}: ${msg}`, err);
    }
    return err;
  }
  if (/max_payload/i.test(msg)) return new MeshError("max_payload", `${what}: ${msg}`, err);
  if (err instanceof natsErrors.RequestError && /cancel/i.test(msg)) {
    return new MeshError("closed", `${what}: cancelled (connection closing)`, err);
  }
  if (
    err instanceof natsErrors.InvalidSubjectError ||
    err instanceof natsErrors.InvalidArgumentError
  ) return new TypeError(`${what}: ${msg}`, { cause: err });
  return err;
}

/** Throws a `TypeError` naming `what` when `subject` is not a valid NATS subject. */
export function checkSubject(subject: string, what: string, wildcards = false): void {
  if (typeof subject !== "string" || !isValidSubject(subject, wildcards)) {
    throw new TypeError(`Cannot ${what} subject "${subject}": invalid subject`);
  }
}

/**
 * {@link checkSubject} for request subjects, remembering the valid ones: a node sends its
 * requests to a few subjects (its peers' inboxes), over and over.
 */
export function checkRequestSubject(subject: string): void {
  if (checked.has(subject)) return;
  checkSubject(subject, "request");
  if (checked.size >= 4096) checked.clear();
  checked.add(subject);
}
const checked = new Set<string>();

/** The NATS headers of mesh headers (`undefined` when there are none). */
export function toNatsHeaders(h: MeshHeaders | undefined): MsgHdrs | undefined {
  if (!h) return undefined;
  let out: MsgHdrs | undefined;
  for (const k in h) {
    out ??= natsHeaders();
    out.set(k, h[k]!);
  }
  return out;
}

const NO_HEADERS: MeshHeaders = Object.freeze({}) as MeshHeaders;

/** The mesh headers of a NATS message (none when they are missing or malformed). */
export function fromNatsHeaders(msg: Msg): MeshHeaders {
  try {
    const h = msg.headers;
    if (!h) return NO_HEADERS;
    const out: MeshHeaders = {};
    for (const k of h.keys()) out[k] = h.get(k);
    return out;
  } catch {
    return NO_HEADERS; // malformed headers from a foreign client
  }
}

/** A NATS message as a {@link MeshMessage}. */
export function toMeshMessage(msg: Msg): MeshMessage {
  const headers = fromNatsHeaders(msg);
  return msg.reply
    ? { subject: msg.subject, headers, data: msg.data, reply: msg.reply }
    : { subject: msg.subject, headers, data: msg.data };
}

/** The empty payload (deleted KV entries, delete markers). */
export const EMPTY = new Uint8Array(0);
