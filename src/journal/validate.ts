/**
 * Checks every `Journal` implementation makes the same way: the shape of an append, a
 * claim and a feed read (programming errors: `TypeError`/`RangeError`), and the two conflicts
 * of an append (`ConflictError`, code `conflict`) with the messages callers see.
 *
 * @module
 */

import { ConflictError } from "../errors.ts";
import type { Append, Claim } from "./types.ts";

/**
 * Checks a claim's shape (a programming error is a `TypeError`).
 *
 * @example
 * ```ts
 * import { validateClaim } from "@troupe/troupe/spi";
 * validateClaim("account/alice", { node: "n1" }); // fine
 * // validateClaim("", undefined) throws a TypeError
 * ```
 */
export function validateClaim(actor: string, claim: Claim | undefined): void {
  if (typeof actor !== "string" || actor === "") {
    throw new TypeError(`Cannot activate: actor must be a non-empty string, got ${String(actor)}`);
  }
  if (claim === undefined) return;
  if (typeof claim.node !== "string" || claim.node === "") {
    throw new TypeError(
      `Cannot activate "${actor}": claim.node must be a non-empty string, got ${
        String(claim.node)
      }`,
    );
  }
  if (claim.takeOver !== undefined && typeof claim.takeOver !== "string") {
    throw new TypeError(`Cannot activate "${actor}": claim.takeOver must be a string`);
  }
}

/**
 * Checks the arguments of `Journal.readCommitted` (a `RangeError` when out of range).
 *
 * @example
 * ```ts
 * import { validateFeedRead } from "@troupe/troupe/spi";
 * validateFeedRead(4, 0, 0, 100); // shard 0 of 4, from the start, 100 events: fine
 * // validateFeedRead(4, 4, 0, 100) throws a RangeError (no shard 4)
 * ```
 */
export function validateFeedRead(
  shards: number,
  shard: number,
  after: number,
  limit: number,
): void {
  if (!Number.isSafeInteger(shard) || shard < 0 || shard >= shards) {
    throw new RangeError(
      `Cannot read committed events: shard ${shard} does not exist (the journal has ${shards})`,
    );
  }
  if (!Number.isSafeInteger(after) || after < 0) {
    throw new RangeError(`Cannot read committed events: position ${after} is not a position`);
  }
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(`Cannot read committed events: limit ${limit} is not a count`);
  }
}

/**
 * Checks the shape of an append that does not depend on stored state. Throws `TypeError`
 * or `RangeError` (programming errors, not conflicts).
 *
 * @example
 * ```ts
 * import { validateAppend } from "@troupe/troupe/spi";
 * validateAppend({ actor: "account/alice", epoch: 1, expectedSeq: 0, events: [] }); // fine
 * // an epoch of -1, a NaN seq or a snapshot past the last event throw
 * ```
 */
export function validateAppend(a: Append): void {
  if (typeof a.actor !== "string" || a.actor === "") {
    throw new TypeError(`Cannot append: actor must be a non-empty string, got ${String(a.actor)}`);
  }
  if (!Number.isSafeInteger(a.epoch) || a.epoch < 0) {
    throw new RangeError(`Cannot append to "${a.actor}": epoch ${a.epoch} is not a valid epoch`);
  }
  if (!Number.isSafeInteger(a.expectedSeq) || a.expectedSeq < 0) {
    throw new RangeError(
      `Cannot append to "${a.actor}": expectedSeq ${a.expectedSeq} is not a valid seq`,
    );
  }
  if (a.idempotency) {
    const { key, reply, fingerprint } = a.idempotency;
    if (
      typeof key !== "string" || typeof fingerprint !== "string" || !(reply instanceof Uint8Array)
    ) {
      throw new TypeError(
        `Cannot append to "${a.actor}": idempotency needs a string key, a Uint8Array reply and a string fingerprint`,
      );
    }
  }
  const last = a.expectedSeq + a.events.length;
  if (a.snapshot && (a.snapshot.seq > last || a.snapshot.seq < 0)) {
    throw new RangeError(
      `Cannot append to "${a.actor}": snapshot seq ${a.snapshot.seq} is after the last appended seq ${last}`,
    );
  }
}

/**
 * The conflict of an append whose epoch is not the current one.
 *
 * @example
 * ```ts
 * import { staleEpoch } from "@troupe/troupe/spi";
 * const a = { actor: "account/alice", epoch: 1, expectedSeq: 0, events: [] };
 * throw staleEpoch(a, 2); // conflict: epoch 1 is stale (current epoch is 2)
 * ```
 */
export function staleEpoch(a: Append, current: number): ConflictError {
  return new ConflictError(
    current === 0
      ? `Cannot append to "${a.actor}": epoch ${a.epoch} is stale (the actor was never activated)`
      : `Cannot append to "${a.actor}": epoch ${a.epoch} is stale (current epoch is ${current})`,
  );
}

/**
 * The conflict of an append whose expected seq is not the head.
 *
 * @example
 * ```ts
 * import { unexpectedSeq } from "@troupe/troupe/spi";
 * const a = { actor: "account/alice", epoch: 1, expectedSeq: 3, events: [] };
 * throw unexpectedSeq(a, 5); // conflict: expected seq 3 but the log ends at 5
 * ```
 */
export function unexpectedSeq(a: Append, head: number): ConflictError {
  return new ConflictError(
    `Cannot append to "${a.actor}" at epoch ${a.epoch}: expected seq ${a.expectedSeq} but the log ends at ${head}`,
  );
}
