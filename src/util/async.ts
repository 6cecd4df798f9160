/**
 * Small async helpers that `@std/async` would give (JSR is unreachable here): delays,
 * deferreds, and a coarse timer wheel for the many short deadlines of RPC.
 *
 * @module
 */

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
 * Resolves after `ms`, or rejects with the signal's reason when it aborts.
 *
 * @example
 * ```ts
 * import { delay } from "@troupe/troupe/spi";
 * const ac = new AbortController();
 * await delay(5, ac.signal); // 5 ms later; rejects at once if `ac` aborts
 * ```
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A scheduled callback of a {@link TimerWheel}. */
export interface WheelEntry {
  /** Monotonic deadline (`performance.now()` clock). */
  readonly at: number;
}

interface Slot extends WheelEntry {
  fn: (() => void) | undefined;
  bucket: number;
}

/**
 * A coarse timer wheel: many deadlines share one timer, with a precision of `tick` ms.
 * Cheaper than a `setTimeout` per request when thousands are in flight; the timer runs only
 * while entries are pending, so nothing is left behind when it is empty.
 *
 * @example
 * ```ts
 * import { TimerWheel } from "@troupe/troupe/spi";
 * const wheel = new TimerWheel(5);
 * const entry = wheel.add(performance.now() + 1_000, () => console.log("timed out"));
 * wheel.remove(entry); // answered in time
 * wheel.close();
 * ```
 */
export class TimerWheel {
  readonly #tick: number;
  readonly #buckets = new Map<number, Set<Slot>>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #size = 0;
  #closed = false;
  #idleTicks = 0;

  /**
   * A wheel of `tick` ms precision.
   * @param tick Precision in ms.
   */
  constructor(tick = 5) {
    this.#tick = tick;
  }

  /** Calls `fn` once `performance.now() >= at` (up to `tick` ms late). */
  add(at: number, fn: () => void): WheelEntry {
    const bucket = Math.ceil(at / this.#tick);
    const slot: Slot = { at, fn, bucket };
    let set = this.#buckets.get(bucket);
    if (!set) this.#buckets.set(bucket, set = new Set());
    set.add(slot);
    this.#size++;
    if (this.#timer === undefined && !this.#closed) {
      this.#timer = setInterval(() => this.#run(), this.#tick);
    }
    return slot;
  }

  /** Cancels an entry. Idempotent. */
  remove(entry: WheelEntry): void {
    const slot = entry as Slot;
    if (!slot.fn) return;
    slot.fn = undefined;
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

  #run(): void {
    // The timer keeps running while entries come and go (starting and stopping it per request
    // costs more than a tick); it stops after a second without any entry.
    if (this.#size === 0) {
      if (++this.#idleTicks * this.#tick >= 1000) this.#stop();
      return;
    }
    this.#idleTicks = 0;
    const now = performance.now();
    const due: Slot[] = [];
    for (const [bucket, set] of this.#buckets) {
      for (const slot of set) {
        if (slot.at <= now) {
          due.push(slot);
          set.delete(slot);
          this.#size--;
        }
      }
      if (set.size === 0) this.#buckets.delete(bucket);
    }
    for (const slot of due) {
      const fn = slot.fn;
      slot.fn = undefined;
      fn?.();
    }
  }

  #stop(): void {
    this.#idleTicks = 0;
    if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Fires every pending entry now and stops the timer. */
  close(): void {
    this.#closed = true;
    const all = [...this.#buckets.values()].flatMap((s) => [...s]);
    this.#buckets.clear();
    this.#size = 0;
    this.#stop();
    for (const slot of all) {
      const fn = slot.fn;
      slot.fn = undefined;
      fn?.();
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
 * Awaits `value` (a promise or a plain value) until `deadline` (`performance.now()` clock);
 * past it, rejects with `onTimeout()`. The timer is cleared either way.
 *
 * @example
 * ```ts
 * import { withDeadline } from "@troupe/troupe/spi";
 * const answer = await withDeadline(
 *   Promise.resolve("fast"),
 *   performance.now() + 100,
 *   () => new Error("too slow"),
 * );
 * console.log(answer); // "fast"
 * ```
 */
export function withDeadline<T>(
  value: T | PromiseLike<T>,
  deadline: number,
  onTimeout: () => Error,
): Promise<T> {
  if (!isPromiseLike(value)) return Promise.resolve(value);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(onTimeout()),
      Math.max(0, deadline - performance.now()),
    );
    value.then((v) => {
      clearTimeout(timer);
      resolve(v);
    }, (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
