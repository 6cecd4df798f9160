/**
 * How errors leave the gateway: the HTTP status of each error code and the error body
 * `{ "error": { "code", "message", "data"? } }`.
 *
 * @module
 */

import { ActorError } from "../../mod.ts";

/** The error body the gateway sends. */
export interface ErrorBody {
  /** The error. */
  error: {
    /** The stable code. */
    code: string;
    /** A sentence that says what failed. */
    message: string;
    /** The error's data, when it has some. */
    data?: unknown;
  };
}

// A Map, not an object literal: a handler's code such as "constructor" must not find a
// property of Object.prototype.
const statusByCode: ReadonlyMap<string, number> = new Map([
  ["bad_payload", 400],
  ["unauthorized", 401],
  ["forbidden", 403],
  ["unknown_handler", 404],
  ["unknown_actor_type", 404],
  ["not_found", 404],
  ["method_not_allowed", 405],
  ["conflict", 409],
  ["overloaded", 429],
  ["rate_limited", 429],
  ["unavailable", 503],
  ["closed", 503],
  ["timeout", 504],
  // Troupe's own codes that say the runtime failed, not the caller
  ["internal", 500],
  ["deadlock", 500],
]);

/** Troupe's codes with an HTTP status of their own (every other code is a handler's: 422). */
export const gatewayCodes: ReadonlySet<string> = new Set(statusByCode.keys());

/**
 * The HTTP status of an error code: the table of the API contract, 422 for a handler's own
 * code (any code Troupe does not define), 500 for Troupe's internal failures.
 */
export function statusOf(code: string): number {
  return statusByCode.get(code) ?? 422;
}

/** Turns a thrown value into the error body; anything but an {@link ActorError} is masked. */
export function errorBody(err: unknown): ErrorBody {
  if (err instanceof ActorError) {
    const body: ErrorBody = { error: { code: err.code, message: err.message } };
    if (err.data !== undefined) body.error.data = err.data;
    return body;
  }
  return { error: { code: "internal", message: "Internal error" } };
}

/** An error raised by the gateway itself (routing, limits, decoding), with its status. */
export class GatewayError extends ActorError {
  /** The HTTP status. */
  readonly status: number;
  /** Seconds to send as `Retry-After` (429, 503), when the gateway knows better than its default. */
  readonly retryAfter: number | undefined;

  /** Makes the error; `status` defaults to the status of `code`. */
  constructor(
    message: string,
    code: string,
    status: number = statusOf(code),
    retryAfter?: number,
  ) {
    super(message, { code });
    this.status = status;
    this.retryAfter = retryAfter;
  }
}
