/**
 * Subject helpers shared by every mesh: token encoding and wildcard matching.
 *
 * @module
 */

const SAFE = /^[A-Za-z0-9_-]+$/;
const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Encodes any string into one subject/KV-key token: plain `[A-Za-z0-9_-]+` stays as it is,
 * anything else becomes `=` + base64url of its UTF-8 bytes. Round-trips with
 * {@link decodeToken}.
 *
 * @example
 * ```ts
 * import { decodeToken, encodeToken } from "@troupe/troupe/spi";
 * const token = encodeToken("alice@example.com"); // "=" + base64url: no dots, no spaces
 * console.log(decodeToken(token)); // "alice@example.com"
 * ```
 */
export function encodeToken(value: string): string {
  if (SAFE.test(value)) return value;
  const bytes = enc.encode(value);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return "=" + btoa(bin).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * Inverse of {@link encodeToken}.
 *
 * @example
 * ```ts
 * import { decodeToken } from "@troupe/troupe/spi";
 * console.log(decodeToken("alice")); // "alice" (plain tokens stay as they are)
 * ```
 */
export function decodeToken(token: string): string {
  if (!token.startsWith("=")) return token;
  const b64 = token.slice(1).replaceAll("-", "+").replaceAll("_", "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return dec.decode(bytes);
}

/**
 * Whether `subject` matches `pattern` (NATS rules: `*` one token, `>` as the last token one or
 * more tokens).
 *
 * @example
 * ```ts
 * import { subjectMatches } from "@troupe/troupe/spi";
 * console.log(subjectMatches("orders.*", "orders.created")); // true
 * console.log(subjectMatches("orders.>", "orders.eu.created")); // true
 * ```
 */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (pattern === subject) return true;
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    const t = p[i];
    if (t === ">") return i === p.length - 1 && s.length > i;
    if (i >= s.length) return false;
    if (t !== "*" && t !== s[i]) return false;
  }
  return p.length === s.length;
}

const LITERAL_SUBJECT = /^[^\s.*>]+(?:\.[^\s.*>]+)*$/;

/**
 * Whether `subject` is a valid subject (no empty tokens, no whitespace).
 *
 * @example
 * ```ts
 * import { isValidSubject } from "@troupe/troupe/spi";
 * console.log(isValidSubject("troupe.n.api-1.account")); // true
 * console.log(isValidSubject("a..b"), isValidSubject("a.*", true)); // false true
 * ```
 */
export function isValidSubject(subject: string, allowWildcards = false): boolean {
  if (LITERAL_SUBJECT.test(subject)) return true;
  if (!allowWildcards || subject.length === 0 || /\s/.test(subject)) return false;
  const tokens = subject.split(".");
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.length === 0) return false;
    if (t.includes("*") || t.includes(">")) {
      if (!allowWildcards) return false;
      if (t !== "*" && !(t === ">" && i === tokens.length - 1)) return false;
    }
  }
  return true;
}

/**
 * Whether every subject that `requested` (a subject or a pattern) can match is matched by
 * `pattern`: `orders.*` covers `orders.created` and `orders.*`, not `orders.>` (which also
 * matches `orders.a.b`). For access rules over subscription patterns, where
 * {@link subjectMatches} would take a wildcard of the request for a literal token.
 *
 * @example
 * ```ts
 * import { patternCovers } from "@troupe/troupe/spi";
 * patternCovers("chat.*", "chat.lobby"); // true
 * patternCovers("chat.*", "chat.>");     // false
 * patternCovers("chat.>", "chat.*.x");   // true
 * ```
 */
export function patternCovers(pattern: string, requested: string): boolean {
  const p = pattern.split(".");
  const r = requested.split(".");
  for (let i = 0; i < p.length; i++) {
    const t = p[i];
    if (t === ">") return i === p.length - 1 && r.length > i;
    if (i >= r.length) return false;
    const q = r[i];
    if (q === ">") return false;
    if (t === "*") continue;
    if (q === "*" || q !== t) return false;
  }
  return p.length === r.length;
}
