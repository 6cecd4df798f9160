/**
 * An unbounded push queue read as an async iterable: the one behind `directory.watch()`, the
 * in-process KV watch and the NATS KV watch. Internal.
 *
 * @module
 */

/** An unbounded push queue read as an async iterable; `stop()` ends it. @internal */
export interface EventQueue<T> extends AsyncIterable<T> {
  /** Adds a value (ignored once stopped). */
  push(value: T): void;
  /**
   * Ends the iteration; pending `next()` calls resolve as done. Values already queued are
   * still read unless `discard` is set. Idempotent.
   */
  stop(discard?: boolean): void;
  /** Registers a callback run once on stop. */
  onStop(fn: () => void): void;
}

/**
 * Creates an {@link EventQueue}.
 *
 * @example
 * ```ts
 * import { createEventQueue } from "./queue.ts";
 * const q = createEventQueue<number>();
 * q.push(1);
 * q.stop();
 * for await (const n of q) console.log(n); // 1
 * ```
 * @internal
 */
export function createEventQueue<T>(): EventQueue<T> {
  let buffer: T[] = [];
  const waiters: ((r: IteratorResult<T>) => void)[] = [];
  const stopFns: (() => void)[] = [];
  let stopped = false;
  const stop = (discard = false) => {
    if (discard) buffer = [];
    if (stopped) return;
    stopped = true;
    for (const fn of stopFns.splice(0)) fn();
    for (const w of waiters.splice(0)) w({ done: true, value: undefined });
  };
  return {
    push(value) {
      if (stopped) return;
      const w = waiters.shift();
      if (w) w({ done: false, value });
      else buffer.push(value);
    },
    stop,
    onStop(fn) {
      if (stopped) fn();
      else stopFns.push(fn);
    },
    [Symbol.asyncIterator](): AsyncIterator<T> {
      return {
        next() {
          if (buffer.length > 0) return Promise.resolve({ done: false, value: buffer.shift()! });
          if (stopped) return Promise.resolve({ done: true, value: undefined });
          return new Promise((resolve) => waiters.push(resolve));
        },
        return() {
          stop();
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
}
