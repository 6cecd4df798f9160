/**
 * Small async helpers that `@std/async` would give (JSR is unreachable here): delays,
 * deferreds, and a timer wheel for the many short deadlines of RPC. Every timer runs on a
 * {@link Clock} given by the caller (the node's, or `systemClock` where time is the network's).
 *
 * @module
 */

import type { Clock, TimerId } from "./clock.ts";
import { heapPop, heapPush } from "./heap.ts";

/** A promise with its resolve/reject exposed. */
export interface Deferred<T> {
  /** The promise. */
  readonly promise: Promise<T>;
  /** Resolves it. */
  resolve(value: T | PromiseLike<T>): void;
  /** Rejects it. */
  reject(reason?: unknown): void;
}

/**
 * Makes a {@link Deferred}.
 *
 * @example
 * ```ts
 * import { deferred } from "@troupe/troupe/spi";
 * const ready = deferred<number>();
 * setTimeout(() => ready.resolve(42), 1);
 * console.log(await ready.promise); // 42
 * ```
 */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T | PromiseLike<T>) => void;
  let reject!: (reason?: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Resolves after `ms` on `clock`, or rejects with the signal's reason when it aborts.
 *
 * @example
 * ```ts
 * import { delay, systemClock } from "@troupe/troupe/spi";
 * const ac = new AbortController();
 * await delay(systemClock, 5, ac.signal); // 5 ms later; rejects at once if `ac` aborts
 * ```
 */
export function delay(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clock.clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A scheduled callback of a {@link TimerWheel}. */
export interface WheelEntry {
  /** Deadline on the wheel's clock (`clock.monotonic()`). */
  readonly at: number;
}

/** An entry (a class, not an object literal: see docs/architecture.md, "Classes, not literals"). */
class Slot implements WheelEntry {
  constructor(
    readonly at: number,
    public fn: ((arg: unknown) => void) | undefined,
    readonly bucket: number,
    /** What `fn` is called with. */
    public arg: unknown,
  ) {}
}

/**
 * Deadlines for many calls at once: entries are grouped in buckets of `tick` ms and the wheel
 * holds one timer of its clock, armed for the earliest entry. Cheaper than a `setTimeout` per
 * request when thousands are in flight: the timer is re-armed only when an entry earlier than
 * it comes, or when it fires; an entry removed before its time costs no timer at all (the timer
 * stays armed until its time even when the wheel empties: disarming it then made every lone call
 * pay a timer). Buckets are found in time order through a min-heap of bucket numbers, rebuilt
 * from the live buckets whenever stale numbers outgrow them, so memory follows the entries
 * pending. The first design ticked every `tick` ms while entries were pending: 200 wake-ups a
 * second, and as many steps for a virtual clock to run through.
 *
 * @example
 * ```ts
 * import { systemClock, TimerWheel } from "@troupe/troupe/spi";
 * const wheel = new TimerWheel(systemClock, 5);
 * const entry = wheel.add(systemClock.monotonic() + 1_000, () => console.log("timed out"));
 * wheel.remove(entry); // answered in time
 * wheel.close();
 * ```
 */
export class TimerWheel {
  readonly #clock: Clock;
  readonly #tick: number;
  /** The buckets that hold entries (an emptied bucket is deleted). */
  readonly #buckets = new Map<number, Set<Slot>>();
  /** Bucket numbers, a min-heap; numbers of deleted buckets stay until they surface. */
  #heap: number[] = [];
  #timer: TimerId | undefined;
  /** When the timer fires (monotonic ms); Infinity when none is armed. */
  #timerAt = Infinity;
  #size = 0;
  #closed = false;

  /**
   * A wheel on `clock`.
   * @param clock The clock whose timer the wheel uses, and whose `monotonic()` deadlines are on.
   * @param tick Width of a bucket in ms. @default {5}
   */
  constructor(clock: Clock, tick = 5) {
    this.#clock = clock;
    this.#tick = tick;
  }

  /**
   * Calls `fn` once `clock.monotonic() >= at`, with `arg` (a callback shared by many entries
   * then needs no closure per entry).
   */
  add<A = undefined>(at: number, fn: (arg: A) => void, arg?: A): WheelEntry {
    const bucket = Math.ceil(at / this.#tick);
    const slot = new Slot(at, fn as (arg: unknown) => void, bucket, arg);
    let set = this.#buckets.get(bucket);
    if (!set) {
      this.#buckets.set(bucket, set = new Set());
      if (this.#heap.length > 2 * this.#buckets.size + 64) this.#compact();
      heapPush(this.#heap, bucket, lessNumber);
    }
    set.add(slot);
    this.#size++;
    if (at < this.#timerAt && !this.#closed) this.#arm(at);
    return slot;
  }

  /** Cancels an entry. Idempotent. */
  remove(entry: WheelEntry): void {
    const slot = entry as Slot;
    if (!slot.fn) return;
    slot.fn = undefined;
    slot.arg = undefined; // what it would have been called with may be collected now
    const set = this.#buckets.get(slot.bucket);
    if (set?.delete(slot)) {
      this.#size--;
      if (set.size === 0) this.#buckets.delete(slot.bucket);
    }
  }

  /** Pending entries. */
  get size(): number {
    return this.#size;
  }

  /** Drops the numbers of deleted buckets from the heap (each live bucket once). */
  #compact(): void {
    const heap: number[] = [];
    for (const bucket of this.#buckets.keys()) heapPush(heap, bucket, lessNumber);
    this.#heap = heap;
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = this.#clock.setTimeout(this.#run, Math.max(0, at - this.#clock.monotonic()));
  }

  #run = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#clock.monotonic();
    const due: Slot[] = [];
    const heap = this.#heap;
    let next = Infinity;
    while (heap.length > 0) {
      const bucket = heap[0]!;
      const set = this.#buckets.get(bucket);
      if (!set) {
        heapPop(heap, lessNumber); // emptied before its time
        continue;
      }
      for (const slot of set) {
        if (slot.at <= now) {
          due.push(slot);
          set.delete(slot);
          this.#size--;
        } else if (slot.at < next) next = slot.at;
      }
      // Entries of later buckets are later than every entry of this one.
      if (set.size > 0) break;
      this.#buckets.delete(bucket);
      heapPop(heap, lessNumber);
    }
    if (next !== Infinity && !this.#closed) this.#arm(next);
    for (const slot of due) {
      const fn = slot.fn;
      slot.fn = undefined;
      fn?.(slot.arg);
    }
  };

  /** Fires every pending entry now and stops the timer. */
  close(): void {
    this.#closed = true;
    const all = [...this.#buckets.values()].flatMap((s) => [...s]);
    this.#buckets.clear();
    this.#heap = [];
    this.#size = 0;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    for (const slot of all) {
      const fn = slot.fn;
      slot.fn = undefined;
      fn?.(slot.arg);
    }
  }
}

/**
 * Whether a value is a thenable.
 *
 * @example
 * ```ts
 * import { isPromiseLike } from "@troupe/troupe/spi";
 * console.log(isPromiseLike(Promise.resolve(1)), isPromiseLike(1)); // true false
 * ```
 */
export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}

/**
 * Awaits `value` (a promise or a plain value) until `deadline` (`clock.monotonic()` time);
 * past it, rejects with `onTimeout()`. The timer is cleared either way.
 *
 * @example
 * ```ts
 * import { systemClock, withDeadline } from "@troupe/troupe/spi";
 * const answer = await withDeadline(
 *   systemClock,
 *   Promise.resolve("fast"),
 *   systemClock.monotonic() + 100,
 *   () => new Error("too slow"),
 * );
 * console.log(answer); // "fast"
 * ```
 */
export function withDeadline<T>(
  clock: Clock,
  value: T | PromiseLike<T>,
  deadline: number,
  onTimeout: () => Error,
): Promise<T> {
  if (!isPromiseLike(value)) return Promise.resolve(value);
  return new Promise<T>((resolve, reject) => {
    const timer = clock.setTimeout(
      () => reject(onTimeout()),
      Math.max(0, deadline - clock.monotonic()),
    );
    value.then((v) => {
      clock.clearTimeout(timer);
      resolve(v);
    }, (err) => {
      clock.clearTimeout(timer);
      reject(err);
    });
  });
}

function lessNumber(a: number, b: number): boolean {
  return a < b;
}
