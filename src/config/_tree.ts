/**
 * Plain-data helpers for config documents: dotted paths, deep merge, deep equality, freezing,
 * and secret redaction. Internal.
 *
 * @module
 */

/** A config document: a plain object of JSON-like values. @internal */
export type ConfigTree = { readonly [key: string]: unknown };

/** Whether `v` is a plain object (not an array, not null, not a class instance). @internal */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Splits a dotted path; `""` is the root (no segments). @internal */
export function splitPath(path: string): string[] {
  if (typeof path !== "string") {
    throw new TypeError(`A config path must be a string, got ${typeof path}`);
  }
  if (path === "") return [];
  const parts = path.split(".");
  if (parts.some((p) => p === "")) {
    throw new TypeError(`Config path "${path}" has an empty segment`);
  }
  return parts;
}

/** The value at `path` (array indices allowed), or undefined. @internal */
export function getAt(tree: unknown, path: readonly string[]): unknown {
  let cur: unknown = tree;
  for (const key of path) {
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9][0-9]*)$/.test(key)) return undefined;
      cur = cur[Number(key)];
    } else if (isPlainObject(cur) || (cur !== null && typeof cur === "object")) {
      if (!Object.hasOwn(cur as object, key)) return undefined;
      cur = (cur as Record<string, unknown>)[key];
    } else return undefined;
  }
  return cur;
}

/**
 * A copy of `tree` with `value` at `path` (objects along the way are created or replaced when
 * they are not plain objects). @internal
 */
export function setAt(tree: ConfigTree, path: readonly string[], value: unknown): ConfigTree {
  if (path.length === 0) {
    if (!isPlainObject(value)) throw new TypeError("The config root must be a plain object");
    return value;
  }
  const [head, ...rest] = path as [string, ...string[]];
  const child = tree[head];
  const next = rest.length === 0 ? value : setAt(isPlainObject(child) ? child : {}, rest, value);
  return { ...tree, [head]: next };
}

/** Deep merge: plain objects merge key by key, anything else in `over` replaces. @internal */
export function deepMerge(base: ConfigTree, over: ConfigTree): ConfigTree {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const prev = out[key];
    out[key] = isPlainObject(prev) && isPlainObject(value) ? deepMerge(prev, value) : value;
  }
  return out;
}

/** Structural equality of JSON-like values (plain objects, arrays, primitives). @internal */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((v, i) => deepEqual(v, bb[i]));
  }
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (a instanceof Date) return a.getTime() === (b as Date).getTime();
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) =>
    Object.hasOwn(b, k) &&
    deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
  );
}

/** Freezes plain objects and arrays, recursively; returns the value. @internal */
export function deepFreeze<T>(value: T): T {
  if (Array.isArray(value) || isPlainObject(value)) {
    if (Object.isFrozen(value)) return value;
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}

/** Compiles secret patterns (dotted paths; `*` one segment, `**` any number). @internal */
export function secretMatcher(patterns: readonly string[]): (path: readonly string[]) => boolean {
  const compiled = patterns.map((p) => splitPath(p));
  const match = (pat: readonly string[], path: readonly string[]): boolean => {
    if (pat.length === 0) return path.length === 0;
    const [head, ...rest] = pat as [string, ...string[]];
    if (head === "**") {
      for (let i = 0; i <= path.length; i++) if (match(rest, path.slice(i))) return true;
      return false;
    }
    if (path.length === 0) return false;
    return (head === "*" || head === path[0]) && match(rest, path.slice(1));
  };
  return (path) => compiled.some((pat) => match(pat, path));
}

/** The text forms of the values at secret paths (a secret object counts with all its leaves). */
export function secretValues(
  tree: unknown,
  isSecret: (path: readonly string[]) => boolean,
  into: Set<string> = new Set(),
): Set<string> {
  const walk = (v: unknown, path: string[], secret: boolean) => {
    const here = secret || (path.length > 0 && isSecret(path));
    if (Array.isArray(v) || isPlainObject(v)) {
      for (const [k, child] of Object.entries(v)) walk(child, [...path, k], here);
      if (here) into.add(JSON.stringify(v));
    } else if (here && v !== undefined && v !== null) {
      const text = String(v);
      // Very short values ("1", "ok") would redact unrelated text everywhere.
      if (text.length >= 3) into.add(text);
      if (typeof v === "string") into.add(JSON.stringify(v));
    }
  };
  walk(tree, [], false);
  return into;
}

/** Replaces every occurrence of each secret in `text` with `[redacted]`. @internal */
export function redactText(text: string, secrets: ReadonlySet<string>): string {
  // Longest first, so a secret containing another is replaced whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) {
    if (s.length > 0) text = text.split(s).join("[redacted]");
  }
  return text;
}

/** A copy of `tree` with the values at secret paths replaced by `"[redacted]"`. @internal */
export function redactTree(
  tree: unknown,
  isSecret: (path: readonly string[]) => boolean,
  path: string[] = [],
): unknown {
  if (path.length > 0 && isSecret(path)) return "[redacted]";
  if (Array.isArray(tree)) return tree.map((v, i) => redactTree(v, isSecret, [...path, `${i}`]));
  if (isPlainObject(tree)) {
    return Object.fromEntries(
      Object.entries(tree).map(([k, v]) => [k, redactTree(v, isSecret, [...path, k])]),
    );
  }
  return tree;
}
