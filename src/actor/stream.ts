/**
 * A bounded channel between a streaming handler (producer) and `ref.stream()` (consumer):
 * the producer's `push` waits while `window` items are unread, so nothing buffers without
 * bound and a slow consumer slows the producer.
 *
 * @module
 */

import { ClosedError, TimeoutError } from "../errors.ts";
import type { StreamSink } from "./envelope.ts";
import type { ActorStream } from "./ref.ts";
import { type Deferred, deferred } from "../util/async.ts";
import type { Clock } from "../util/clock.ts";

/** A bounded stream channel: the producer side is a {@link StreamSink}, the consumer an {@link ActorStream}. */
export class StreamChannel<T = unknown> implements StreamSink, ActorStream<T> {
  readonly #window: number;
  readonly #buffer: T[] = [];
  readonly #controller = new AbortController();
  #done = false;
  #error: unknown = undefined;
  #failed = false;
  #reader: Deferred<void> | undefined;
  #writer: Deferred<void> | undefined;

  /** @param window Items the producer may run ahead of the consumer. */
  constructor(window = 16) {
    this.#window = Math.max(1, window);
  }

  /** Items the producer may run ahead of the consumer. */
  get window(): number {
    return this.#window;
  }

  /** Aborted when the consumer cancels. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Producer: adds an item; resolves when there is room for the next. */
  push(item: unknown): Promise<void> {
    if (this.#controller.signal.aborted) {
      return Promise.reject(new ClosedError("The stream was cancelled by its consumer"));
    }
    if (this.#done) return Promise.reject(new ClosedError("The stream has ended"));
    this.#buffer.push(item as T);
    this.#wakeReader();
    if (this.#buffer.length < this.#window) return Promise.resolve();
    this.#writer = deferred();
    return this.#writer.promise;
  }

  /** Producer: ends normally. */
  end(): void {
    this.#done = true;
    this.#wakeReader();
  }

  /** Producer: ends with an error (thrown to the consumer after the buffered items). */
  error(err: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#failed = true;
    this.#error = err;
    this.#wakeReader();
  }

  #wakeReader(): void {
    const r = this.#reader;
    this.#reader = undefined;
    r?.resolve();
  }

  /** Consumer: cancels; a waiting producer is rejected. */
  cancel(): Promise<void> {
    if (!this.#controller.signal.aborted) {
      this.#controller.abort(new ClosedError("The stream was cancelled by its consumer"));
      this.#done = true;
      this.#buffer.length = 0;
      const w = this.#writer;
      this.#writer = undefined;
      w?.reject(this.#controller.signal.reason);
      this.#wakeReader();
    }
    return Promise.resolve();
  }

  /** Consumer: gives up with `reason`: the producer is cancelled, the reader gets `reason`. */
  abort(reason: unknown): void {
    void this.cancel();
    this.#failed = true;
    this.#error = reason;
    this.#wakeReader();
  }

  /** Consumer: the next item, or done. */
  async next(): Promise<IteratorResult<T>> {
    for (;;) {
      if (this.#buffer.length > 0) {
        const value = this.#buffer.shift()!;
        if (this.#buffer.length < this.#window) {
          const w = this.#writer;
          this.#writer = undefined;
          w?.resolve();
        }
        return { value, done: false };
      }
      if (this.#done) {
        if (this.#failed) {
          this.#failed = false;
          throw this.#error;
        }
        return { value: undefined, done: true };
      }
      this.#reader = deferred();
      await this.#reader.promise;
    }
  }

  /** Iterates the items; breaking out of the loop cancels the stream. */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      return: async () => {
        await this.cancel();
        return { value: undefined, done: true };
      },
    };
  }
}

/**
 * Drives a streaming handler's iterator into `sink` with backpressure: each item waits for
 * room; a cancelled consumer closes the iterator. `afterStep` runs after every step (before
 * its item is sent), e.g. to commit the events the step emitted. The whole stream is bounded
 * by `deadline` (on `clock`'s monotonic time): past it the iterator is closed and the consumer
 * gets `timeout`, however fast it reads. Errors of the iterator propagate.
 */
export async function pumpStream(
  clock: Clock,
  it: AsyncIterator<unknown> | Iterator<unknown>,
  sink: StreamSink,
  deadline: number,
  afterStep?: () => Promise<void>,
): Promise<void> {
  let timedOut = false;
  let wake: (() => void) | undefined;
  const timer = clock.setTimeout(() => {
    timedOut = true;
    wake?.();
  }, Math.max(0, deadline - clock.monotonic()));
  const late = () => new TimeoutError("The stream passed its deadline");
  try {
    for (;;) {
      if (sink.signal.aborted) return void await it.return?.();
      if (timedOut) {
        await it.return?.();
        return sink.error(late());
      }
      const step = await it.next();
      await afterStep?.();
      if (step.done) return sink.end();
      const ok = await new Promise<boolean | "late">((resolve) => {
        wake = () => resolve("late");
        sink.push(step.value).then(() => resolve(true), () => resolve(false));
      });
      wake = undefined;
      if (ok === "late") {
        await it.return?.();
        return sink.error(late());
      }
      if (!ok) return void await it.return?.();
    }
  } finally {
    clock.clearTimeout(timer);
  }
}
