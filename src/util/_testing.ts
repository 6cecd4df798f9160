/**
 * Helpers for the unit tests beside the files of `src/` (`*_test.ts`), which import nothing
 * outside `src/`; `tests/helpers.ts` re-exports them for the system tests. Not published.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BadPayloadError } from "../errors.ts";
import { delay as clockDelay } from "./async.ts";
import { systemClock } from "./clock.ts";
import type { VirtualClock } from "./virtual_clock.ts";

/**
 * Resolves after `ms` of real time: for the process and chaos tests, which need real time.
 * Tests of timing inside one process run on a `virtualClock()` instead.
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return clockDelay(systemClock, ms, signal);
}

/** Asserts that `fn` throws a `BadPayloadError` (code `bad_payload`) matching `pattern`. */
export function rejectsBadPayload(fn: () => unknown, pattern?: RegExp): BadPayloadError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BadPayloadError, `expected BadPayloadError, got ${err}`);
    assert.equal(err.code, "bad_payload");
    if (pattern) assert.match(err.message, pattern);
    return err;
  }
  assert.fail("expected a BadPayloadError");
}

/** Polls `cond` every 5 ms until it holds; throws after `timeout` ms, naming `what`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeout: number,
  what: string,
): Promise<void> {
  const end = performance.now() + timeout;
  while (!(await cond())) {
    if (performance.now() > end) {
      throw new Error(`Timed out after ${timeout} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Resolves as `promise` does, or rejects after `timeout` ms naming `what` (the timer is
 * cleared either way, so no timer outlives the test).
 */
export async function within<T>(promise: Promise<T>, timeout: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${timeout} ms waiting for ${what}`)),
      timeout,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Moves `clock` on by `step` ms at a time until `cond` holds, and returns the virtual ms that
 * took; throws once more than `limit` virtual ms passed, naming `what`. Deterministic: only
 * the virtual clock decides (each step lets promises settle).
 */
export async function advanceUntil(
  clock: VirtualClock,
  cond: () => boolean | Promise<boolean>,
  limit: number,
  what: string,
  step = 1,
): Promise<number> {
  const start = clock.monotonic();
  while (!(await cond())) {
    if (clock.monotonic() - start >= limit) {
      throw new Error(`Not within ${limit} ms of virtual time: ${what}`);
    }
    await clock.advance(step);
  }
  return clock.monotonic() - start;
}
