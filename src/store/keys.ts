/**
 * Helpers every store backend shares: key order, literal prefix ranges and the
 * conflict error.
 *
 * @module
 */

import { ConflictError } from "../errors.ts";

/**
 * Compares two keys by Unicode code point, the order of their UTF-8 bytes (SQLite's `BINARY`
 * order for text). JavaScript's `<` compares UTF-16 code units, which differs for characters
 * above U+FFFF against U+E000–U+FFFF.
 *
 * @example
 * ```ts
 * import { compareKeys } from "./keys.ts";
 * compareKeys("\u{1F600}", "\uFFFD"); // 1 (while "\u{1F600}" < "\uFFFD" is true)
 * ```
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (0xD800–0xDFFF, half of a character above U+FFFF) sorts after any other
    // code unit: those are characters up to U+FFFF.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/**
 * The smallest string greater than every string that starts with `prefix` (in code point
 * order), or `undefined` when there is none (`""`, or only U+10FFFF characters). So
 * `key >= prefix && key < end` is exactly "starts with `prefix`", with no special characters.
 *
 * @example
 * ```ts
 * import { prefixEnd } from "./keys.ts";
 * prefixEnd("user:"); // "user;"
 * prefixEnd("a%"); // "a&"
 * ```
 */
export function prefixEnd(prefix: string): string | undefined {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!;
    if (last === 0x10ffff) continue;
    // Skip the surrogate range: it holds no characters.
    const next = last === 0xd7ff ? 0xe000 : last + 1;
    return points.join("") + String.fromCodePoint(next);
  }
  return undefined;
}

/**
 * The `ConflictError` of a refused compare-and-set, saying what was expected and found.
 *
 * @param op What was attempted, e.g. `"set"` or `"delete"`.
 * @param store The store's name.
 * @param key The key.
 * @param expected The `ifRevision` of the call.
 * @param found The live record's revision (`0` or `undefined` when there is none).
 *
 * @example
 * ```ts
 * import { storeConflict } from "./keys.ts";
 * storeConflict("set", "carts", "u1", 3, 5).message;
 * // 'Cannot set "u1" in store "carts": expected revision 3, the record is at revision 5'
 * ```
 */
export function storeConflict(
  op: string,
  store: string,
  key: string,
  expected: number,
  found: number | undefined,
): ConflictError {
  const want = expected === 0 ? "expected no record" : `expected revision ${expected}`;
  const have = found ? `the record is at revision ${found}` : "there is none";
  return new ConflictError(`Cannot ${op} "${key}" in store "${store}": ${want}, ${have}`, {
    data: { store, key, expected, revision: found ?? 0 },
  });
}
