/**
 * The gateway's admission limits: token buckets per key (a verified caller, a client address)
 * and counters of work in progress (requests, streams, streams per key). Everything here is
 * bounded: a bucket table holds at most {@link MAX_KEYS} keys (the least recently used one is
 * forgotten first, which at worst gives that key a full bucket again), and a counter key is
 * forgotten when it drops to zero.
 *
 * @module
 */

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

  /** Takes one token of `key`: 0 when there was one, else whole seconds until there is. */
  take(key: string, now: number): number {
    const buckets = this.#buckets;
    let b = buckets.get(key);
    if (b === undefined) {
      if (buckets.size >= this.#max) buckets.delete(buckets.keys().next().value!);
      b = { tokens: this.#burst, at: now };
    } else {
      buckets.delete(key); // re-inserted below: the map's order is the order of last use
      b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#rate);
      b.at = now;
    }
    buckets.set(key, b);
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
