/**
 * Keeps in-process work from starving the event loop. An in-process ask to an actor of this
 * node completes through promise callbacks alone (microtasks), so a loop of them never lets
 * the event loop turn: timers (the node's heartbeat, so its lease) and I/O wait until the loop
 * ends, and after a lease's time to live the node fences itself. {@link loopStarved} tells,
 * cheaply, when the event loop has not turned for {@link STARVED_MS}; the caller then
 * continues in a macrotask, which lets timers and I/O run.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** How long work may run in microtasks alone before it continues in a macrotask, ms. */
export const STARVED_MS = 20;
/** Calls between two looks at the time (a power of two). */
const EVERY = 128;

let calls = 0;
/** Whether a macrotask is queued that marks the next turn of the event loop. */
let armed = false;
/** When it was queued (real time, ms). */
let armedAt = 0;

function turned(): void {
  armed = false;
}

/**
 * Whether the event loop has not turned for {@link STARVED_MS} (real time: the event loop's
 * turns are the host's, whatever clock the runtime runs on). Looks at the time once every
 * 128 calls.
 *
 * @example
 * ```ts
 * import { loopStarved } from "./loop.ts";
 * if (loopStarved()) await new Promise((resolve) => setTimeout(resolve, 0));
 * ```
 */
export function loopStarved(): boolean {
  if ((++calls & (EVERY - 1)) !== 0) return false;
  // real-time: the host's event loop turns, not the runtime's time
  const now = performance.now();
  if (!armed) {
    armed = true;
    armedAt = now;
    setImmediate(turned);
    return false;
  }
  return now - armedAt > STARVED_MS;
}

/** Runs `fn` in a macrotask (after timers and I/O that are due). */
export function inMacrotask(fn: () => void): void {
  setImmediate(fn);
}
