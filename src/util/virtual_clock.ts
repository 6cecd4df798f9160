/**
 * A {@link Clock} that tests drive: time stands still until the test moves it. Exported by
 * `./testing` as `virtualClock()`.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { type Clock, systemClock, type TimerId } from "./clock.ts";
import { heapPop, heapPush } from "./heap.ts";

/**
 * A clock whose time moves only when the test says: see {@link virtualClock}.
 *
 * @example
 * ```ts
 * import { virtualClock } from "@troupe/troupe/testing";
 * const clock = virtualClock(new Date("2026-01-01T00:00:00Z"));
 * let fired = false;
 * clock.setTimeout(() => fired = true, 1_000);
 * await clock.advance(999);
 * console.log(fired); // false
 * await clock.advance(1);
 * console.log(fired); // true
 * ```
 */
export interface VirtualClock extends Clock {
  /**
   * Moves both readings forward by `ms` and runs, in the order they are due, every timer due up
   * to the new time (timers that those timers set included). Time stops at each timer's due
   * time while it runs, and promises settle before the next one runs, so a handler awaiting a
   * timer finishes before a later timer fires. Resolves once the last one ran and its promises
   * settled; rejects with the error of a timer callback that threw (time stops there).
   *
   * What settles is what waits on promises (in-process work: the in-process mesh, the memory
   * journal and store). Work waiting on real I/O (a libSQL file, a NATS server) may still run
   * when it resolves: await that work itself.
   */
  advance(ms: number): Promise<void>;
  /**
   * Sets the wall clock (`now()`) to `date`, forward or back, as an operator or NTP would. The
   * monotonic reading and the timers are untouched (timers are on the monotonic clock).
   */
  set(date: Date | number): void;
  /** Timers waiting (intervals count once). */
  readonly pending: number;
}

interface VirtualTimer {
  readonly id: number;
  at: number;
  /** Order among timers due at the same time: the order they were set in. */
  seq: number;
  readonly fn: () => void;
  /** Period of an interval; undefined for a timeout. */
  readonly every: number | undefined;
}

/** Timers one `advance()` runs at a single instant before it gives up (a timer loop). */
const MAX_AT_ONE_INSTANT = 100_000;

/**
 * Makes a clock for tests: `now()` starts at `start` (default: the real time now),
 * `monotonic()` at 0, and neither moves until the test calls `advance(ms)` (both move) or
 * `set(date)` (the wall clock only). Give it to `createSystem({ clock })`: call deadlines, idle
 * passivation, reminders, lease and membership timing, config debounce, store TTLs and the
 * purge, stream and drain bounds all follow it, so a test of an hour of reminders runs in
 * milliseconds.
 *
 * Timers due at the current time (a zero delay) run on their own, soon after they are set, as
 * real zero-delay timers do: only time itself waits for the test.
 *
 * @example
 * ```ts
 * import { createSystem, defineActor } from "@troupe/troupe";
 * import { virtualClock } from "@troupe/troupe/testing";
 *
 * const Alarm = defineActor({
 *   name: "alarm",
 *   initialState: () => ({ rang: 0 }),
 *   events: { rang: (s) => ({ rang: s.rang + 1 }) },
 *   handlers: {
 *     set: (ctx) => ctx.schedule(3_600_000, "ring", undefined),
 *     ring: (ctx) => ctx.emit("rang", {}),
 *     rang: (ctx) => ctx.state.rang,
 *   },
 * });
 * const clock = virtualClock(new Date("2026-01-01T00:00:00Z"));
 * const system = await createSystem({ actors: [Alarm], clock });
 * await system.ref(Alarm, "a").ask("set", undefined);
 * await clock.advance(3_600_000); // an hour, in milliseconds of real time
 * console.log(await system.ref(Alarm, "a").ask("rang", undefined)); // 1
 * await system.close();
 * ```
 */
export function virtualClock(start?: Date): VirtualClock {
  const from = start === undefined ? systemClock.now() : start.getTime();
  if (!Number.isFinite(from)) throw new RangeError(`Cannot start a virtual clock at ${start}`);
  return new VirtualClockImpl(from);
}

class VirtualClockImpl implements VirtualClock {
  #mono = 0;
  #wallOffset: number;
  readonly #timers = new Map<number, VirtualTimer>();
  /** Pending timers ordered by (at, seq); cancelled ones are skipped when they surface. */
  readonly #heap: VirtualTimer[] = [];
  #ids = 0;
  #seq = 0;
  #advancing: Promise<void> | undefined;
  #pumping = false;

  constructor(start: number) {
    this.#wallOffset = start;
  }

  // Arrow properties: `clock.now` can be handed on alone (`memoryJournal({ now: clock.now })`).
  readonly now = (): number => this.#wallOffset + this.#mono;

  readonly monotonic = (): number => this.#mono;

  readonly setTimeout = (fn: () => void, ms: number): TimerId =>
    this.#add(fn, delayOf(ms), undefined);

  readonly clearTimeout = (id: TimerId | undefined): void => {
    if (id !== undefined) this.#timers.delete(id as unknown as number);
  };

  readonly setInterval = (fn: () => void, ms: number): TimerId => {
    const every = Math.max(1, delayOf(ms)); // a zero period would never let time move
    return this.#add(fn, every, every);
  };

  readonly clearInterval = (id: TimerId | undefined): void => this.clearTimeout(id);

  readonly unref = (_id: TimerId): void => {};

  get pending(): number {
    return this.#timers.size;
  }

  set(date: Date | number): void {
    const t = typeof date === "number" ? date : date?.getTime?.();
    if (typeof t !== "number" || !Number.isFinite(t)) {
      throw new RangeError(`Cannot set a virtual clock to ${String(date)}`);
    }
    this.#wallOffset = t - this.#mono;
  }

  advance(ms: number): Promise<void> {
    if (typeof ms !== "number" || !(ms >= 0) || !Number.isFinite(ms)) {
      return Promise.reject(
        new RangeError(`Cannot advance a virtual clock by ${String(ms)} ms: need a finite ms >= 0`),
      );
    }
    // Calls made at once run one after the other, each from where the previous one stopped.
    const run = (this.#advancing ?? Promise.resolve()).then(() => this.#run(ms));
    const tail: Promise<void> = run.then(() => {}, () => {}).then(() => {
      if (this.#advancing === tail) this.#advancing = undefined;
    });
    this.#advancing = tail;
    return run;
  }

  async #run(ms: number): Promise<void> {
    // What the test started before it advanced reaches its timers first.
    await settle();
    const target = this.#mono + ms;
    let instant = this.#mono;
    let atInstant = 0;
    for (;;) {
      const t = this.#peek();
      if (!t || t.at > target) break;
      if (t.at > this.#mono) this.#mono = t.at;
      if (this.#mono !== instant) {
        instant = this.#mono;
        atInstant = 0;
      } else if (++atInstant > MAX_AT_ONE_INSTANT) {
        throw new Error(
          `More than ${MAX_AT_ONE_INSTANT} timers ran at virtual time ${instant} ms: a timer keeps setting itself with no delay`,
        );
      }
      this.#fire(t);
      await settle();
    }
    this.#mono = target;
    await settle();
  }

  #add(fn: () => void, ms: number, every: number | undefined): TimerId {
    if (typeof fn !== "function") throw new TypeError("A timer needs a function");
    const timer: VirtualTimer = {
      id: ++this.#ids,
      at: this.#mono + ms,
      seq: ++this.#seq,
      fn,
      every,
    };
    this.#timers.set(timer.id, timer);
    heapPush(this.#heap, timer, before);
    if (ms === 0) this.#pump();
    return timer.id as unknown as TimerId;
  }

  /** The earliest live timer, left in the heap. */
  #peek(): VirtualTimer | undefined {
    const heap = this.#heap;
    while (heap.length > 0) {
      const t = heap[0]!;
      if (this.#timers.get(t.id) === t) return t; // else cancelled
      heapPop(heap, before);
    }
    return undefined;
  }

  /** Takes `t` (the top of the heap) off it, re-queues it if it is an interval, and calls it. */
  #fire(t: VirtualTimer): void {
    heapPop(this.#heap, before);
    if (t.every === undefined) this.#timers.delete(t.id);
    else {
      t.at += t.every;
      t.seq = ++this.#seq;
      heapPush(this.#heap, t, before);
    }
    t.fn();
  }

  /** Runs the timers due now that were set outside `advance()`, soon, like zero-delay timers. */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    setImmediate(async () => {
      try {
        for (;;) {
          if (this.#advancing) return; // advance() runs them in order
          const t = this.#peek();
          if (!t || t.at > this.#mono) return;
          this.#fire(t);
          await settle();
        }
      } finally {
        this.#pumping = false;
      }
    });
  }
}

/** A delay as the host takes it: not a number or negative is 0. */
function delayOf(ms: number): number {
  return typeof ms === "number" && ms > 0 ? ms : 0;
}

/** Lets every promise chain run until it waits for something else (one macrotask turn). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function before(a: VirtualTimer, b: VirtualTimer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
