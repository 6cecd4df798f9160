/**
 * A cheap lower bound of a value's encoded size, so that a local ask (which skips the codec)
 * rejects an oversize payload the same way a remote one does, without encoding it.
 *
 * @module
 */

/**
 * A lower bound, in bytes, of any encoding of `value` (strings count one byte per UTF-16
 * unit, bytes their length, other scalars one byte). Stops early once `limit` is passed and
 * after `maxNodes` values, so it costs little for small payloads and is bounded for big ones.
 */
export function sizeLowerBound(value: unknown, limit: number, maxNodes = 20_000): number {
  if (typeof value !== "object" || value === null) {
    return typeof value === "string" ? value.length : 1;
  }
  let total = 0;
  let nodes = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    // Cyclic values (allowed locally, passed by reference) end at maxNodes.
    if (++nodes > maxNodes || total > limit) break;
    if (typeof v === "string") total += v.length;
    else if (v instanceof Uint8Array) total += v.byteLength;
    else if (typeof v === "object" && v !== null) {
      if (Array.isArray(v)) {
        total += 1;
        for (const x of v) stack.push(x);
      } else if (v instanceof Map) {
        for (const [k, x] of v) stack.push(k, x);
      } else if (v instanceof Set) {
        for (const x of v) stack.push(x);
      } else {
        for (const k in v) {
          if (!Object.hasOwn(v, k)) continue;
          total += k.length;
          stack.push((v as Record<string, unknown>)[k]);
        }
      }
    } else total += 1;
  }
  return total;
}
