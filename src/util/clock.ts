/**
 * The Clock port: every reading of time and every timer of the runtime goes through one, so
 * that tests can drive time instead of waiting for it (`virtualClock()` in `./testing`).
 *
 * Two readings: the wall clock (`now()`, ms since the epoch: timestamps, reminders' due times,
 * token expiry, record TTLs) and a monotonic one (`monotonic()`, ms from an arbitrary origin:
 * deadlines, leases, heartbeats, idle times), which never goes back when the wall clock is set.
 *
 * @module
 */

/** A pending timer of a {@link Clock}, as returned by `setTimeout`/`setInterval`. */
export type TimerId = ReturnType<typeof setTimeout>;

/**
 * Time, for the runtime: readings and timers.
 *
 * @example
 * ```ts
 * import { systemClock } from "./clock.ts";
 * const started = systemClock.monotonic();
 * const id = systemClock.setTimeout(() => {
 *   console.log(`${systemClock.monotonic() - started} ms later`);
 * }, 10);
 * systemClock.clearTimeout(id); // changed our mind
 * ```
 */
export interface Clock {
  /** Wall-clock time, ms since the Unix epoch (like `Date.now()`). */
  now(): number;
  /** Monotonic time in ms, from an arbitrary origin (like `performance.now()`). */
  monotonic(): number;
  /** Calls `fn` once, `ms` from now (on the monotonic clock). */
  setTimeout(fn: () => void, ms: number): TimerId;
  /** Cancels a timer from `setTimeout`. Ignores `undefined` and timers that already ran. */
  clearTimeout(id: TimerId | undefined): void;
  /** Calls `fn` every `ms`. */
  setInterval(fn: () => void, ms: number): TimerId;
  /** Cancels a timer from `setInterval`. Ignores `undefined`. */
  clearInterval(id: TimerId | undefined): void;
  /**
   * Lets the process exit while the timer is pending (a background sweep that must not keep a
   * program alive). A virtual clock ignores it.
   */
  unref(id: TimerId): void;
}

/**
 * The longest delay a host timer takes without overflowing (about 24.8 days).
 *
 * @example
 * ```ts
 * import { MAX_TIMER_MS } from "@troupe/troupe/spi";
 * const wait = (ms: number) => Math.min(ms, MAX_TIMER_MS); // re-arm past it
 * ```
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The real clock: `Date.now()`, `performance.now()` and the host's timers. A delay longer than
 * {@link MAX_TIMER_MS} is clamped (the host would fire it at once).
 *
 * @example
 * ```ts
 * import { systemClock } from "./clock.ts";
 * console.log(new Date(systemClock.now()).toISOString());
 * ```
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS)),
  clearTimeout: (id) => clearTimeout(id),
  setInterval: (fn, ms) => setInterval(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS)),
  clearInterval: (id) => clearInterval(id),
  unref: (id) => Deno.unrefTimer(id as unknown as number),
};
