/**
 * The gateway's admission limits: token buckets per key (a verified caller, a client address)
 * and counters of work in progress (requests, streams, streams per key). Everything here is
 * bounded: a bucket table holds at most {@link MAX_KEYS} keys (the oldest one is forgotten
 * first, which at worst gives that key a full bucket again: a flood of new keys can make the
 * limit of an old one laxer, never stricter), and a counter key is forgotten when it drops to
 * zero.
 *
 * @module
 */

import { systemClock, type TimerId } from "../../spi.ts";

/** A token bucket's settings: `rate` tokens per second, at most `burst` saved up. */
export interface RateLimit {
  /** Requests per second, on average. */
  rate: number;
  /** Requests that may come at once after a quiet time. @default {rate} */
  burst?: number;
}

/** Keys a bucket table remembers at most. */
export const MAX_KEYS = 100_000;

interface Bucket {
  tokens: number;
  at: number;
}

/** Token buckets by key; `take(key)` is 0 when allowed, else the seconds to wait. */
export class Buckets {
  readonly #rate: number;
  readonly #burst: number;
  readonly #max: number;
  readonly #buckets = new Map<string, Bucket>();

  /** Makes a table; throws `RangeError` for a rate or burst that is not positive. */
  constructor(limit: RateLimit, what: string, max = MAX_KEYS) {
    const burst = limit.burst ?? limit.rate;
    if (!(limit.rate > 0) || !Number.isFinite(limit.rate)) {
      throw new RangeError(`gateway(): ${what}.rate must be a positive number, got ${limit.rate}`);
    }
    if (!(burst >= 1) || !Number.isFinite(burst)) {
      throw new RangeError(`gateway(): ${what}.burst must be at least 1, got ${burst}`);
    }
    this.#rate = limit.rate / 1000; // per ms
    this.#burst = burst;
    this.#max = max;
  }

  /**
   * Takes one token of `key` at `now` (ms, the system clock's wall time: cheaper than its
   * monotonic time on the host, and a clock step back only delays refilling): 0 when there was one, else whole seconds
   * until there is.
   */
  take(key: string, now: number): number {
    const buckets = this.#buckets;
    let b = buckets.get(key);
    if (b === undefined) {
      if (buckets.size >= this.#max) buckets.delete(buckets.keys().next().value!);
      b = { tokens: this.#burst, at: now };
      buckets.set(key, b);
    } else {
      if (now > b.at) {
        b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#rate);
        b.at = now;
      }
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.#rate / 1000));
  }

  /** Keys remembered now (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }
}

/** Counts of work in progress per key, each bounded by `max`; keys at zero are forgotten. */
export class Counters {
  readonly #max: number;
  readonly #counts = new Map<string, number>();

  constructor(max: number) {
    this.#max = max;
  }

  /** Counts one more for `key`; false (and nothing counted) when `key` is at its maximum. */
  acquire(key: string): boolean {
    const n = this.#counts.get(key) ?? 0;
    if (n >= this.#max) return false;
    this.#counts.set(key, n + 1);
    return true;
  }

  /** Counts one less for `key`. */
  release(key: string): void {
    const n = (this.#counts.get(key) ?? 0) - 1;
    if (n <= 0) this.#counts.delete(key);
    else this.#counts.set(key, n);
  }

  /** The count of `key`. */
  get(key: string): number {
    return this.#counts.get(key) ?? 0;
  }
}

/**
 * The key of a client address for rate limits: an IPv4 address as it is, an IPv6 address
 * cut to its /64 network (one subscriber usually gets a whole /64, so per-address limits on
 * full IPv6 addresses would be no limit at all).
 */
export function addressKey(hostname: string): string {
  if (!hostname.includes(":")) return hostname;
  let host = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
  const zone = host.indexOf("%");
  if (zone !== -1) host = host.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped) return mapped[1]!;
  // expand "::" so that the first four groups are known
  const [head, tail] = host.split("::") as [string, string | undefined];
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined
    ? left
    : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, "")).join(":") +
    "::/64";
}

/** A pending deadline of {@link Deadlines}. */
export interface Deadline {
  /** The tick of the sweep after which it fires. */
  readonly tick: number;
  /** What is told when it fires. */
  readonly fire: (err: unknown) => void;
  /** Whether it was removed (it stays in the queue until a sweep reaches it). */
  removed: boolean;
}

/**
 * Deadlines checked by one timer, instead of a timer per request (setting and clearing a
 * timer per request cost the gateway ~5 % of its throughput). The timer ticks every
 * `resolution` ms while deadlines are pending and stops at the first tick that finds none (so
 * an idle gateway holds none); it is unref'd, so it never keeps a process alive. Time is
 * counted in ticks, so adding a deadline reads no clock; a deadline fires between `ms` and
 * `ms + resolution` after it was added (later if the event loop is late). All deadlines have
 * the same length, so they fire in the order they were added.
 */
export class Deadlines {
  readonly #ticks: number;
  readonly #resolution: number;
  readonly #error: () => unknown;
  /** Deadlines in the order added, from `#head` on (removed ones are skipped by the sweep). */
  #queue: Deadline[] = [];
  #head = 0;
  /** Deadlines added and neither removed nor fired. */
  #live = 0;
  #tick = 0;
  #timer: TimerId | undefined;

  /**
   * Deadlines of `ms` each that fire with `error()`, looked at every `resolution` ms
   * (default: a tenth of `ms`, from 5 to 250 ms).
   */
  constructor(
    ms: number,
    error: () => unknown,
    resolution = Math.min(250, Math.max(5, ms / 10)),
  ) {
    this.#resolution = resolution;
    this.#ticks = Math.ceil(ms / resolution);
    this.#error = error;
  }

  /** Calls `fire` with the error once the time has passed, unless removed first. */
  add(fire: (err: unknown) => void): Deadline {
    const entry: Deadline = { tick: this.#tick + this.#ticks, fire, removed: false };
    this.#queue.push(entry);
    this.#live++;
    if (this.#timer === undefined) {
      // Real time, not the system's clock: it bounds reads from a real socket.
      this.#timer = systemClock.setInterval(() => this.#sweep(), this.#resolution);
      systemClock.unref(this.#timer);
    }
    return entry;
  }

  /** Forgets a deadline (its work finished in time). */
  remove(entry: Deadline): void {
    if (entry.removed) return;
    entry.removed = true;
    this.#live--;
  }

  #sweep(): void {
    const tick = ++this.#tick;
    const queue = this.#queue;
    let head = this.#head;
    for (; head < queue.length; head++) {
      const entry = queue[head]!;
      if (entry.removed) continue;
      if (entry.tick > tick) break; // the rest were added later
      entry.removed = true;
      this.#live--;
      entry.fire(this.#error());
    }
    // skip removed entries up to the first pending one, and drop what is behind it
    while (head < queue.length && queue[head]!.removed) head++;
    if (head === queue.length) {
      this.#queue = [];
      this.#head = 0;
      systemClock.clearInterval(this.#timer);
      this.#timer = undefined;
    } else if (queue.length - head > 4 * this.#live + 1024) {
      // removed entries behind a pending one (a slow body holding the head): keep the queue
      // within a few times what is pending
      this.#queue = queue.slice(head).filter((e) => !e.removed);
      this.#head = 0;
    } else if (head > 1024 && head * 2 > queue.length) {
      this.#queue = queue.slice(head);
      this.#head = 0;
    } else this.#head = head;
  }
}
