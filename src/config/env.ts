/**
 * `fromEnv(prefix)`: config from environment variables, read once at start.
 *
 * @module
 */

import { type ConfigTree, setAt } from "./_tree.ts";
import type { ConfigSource } from "./types.ts";

/** Options of {@link fromEnv}. */
export interface FromEnvOptions {
  /** The variables to read instead of the process environment (for tests). @default {Deno.env.toObject()} */
  env?: Record<string, string | undefined>;
}

/**
 * Config from environment variables whose names start with `prefix`, read once when the system
 * starts. After the prefix, `__` separates levels and `_` separates words of a camel-cased key:
 * `APP_LIMITS__MAX_TRANSFER=500` sets `limits.maxTransfer` to `500`. Values are parsed as JSON
 * when they parse (`500`, `true`, `[1,2]`, `{"a":1}`) and kept as strings otherwise.
 *
 * @example
 * ```ts
 * import { createSystem, fromEnv } from "@troupe/troupe";
 * const system = await createSystem({
 *   config: { sources: [fromEnv("APP_", { env: { APP_LIMITS__MAX_TRANSFER: "500" } })] },
 * });
 * system.config.get("limits.maxTransfer", 0); // 500
 * await system.close();
 * ```
 */
export function fromEnv(prefix: string, options: FromEnvOptions = {}): ConfigSource {
  if (typeof prefix !== "string") throw new TypeError("fromEnv() needs a prefix string");
  return {
    name: `env:${prefix}`,
    start(context) {
      const vars = options.env ?? Deno.env.toObject();
      context.update(parseEnv(prefix, vars));
      return { stop() {} };
    },
  };
}

/**
 * The document `fromEnv(prefix)` makes of `vars`. Shallower names apply first, so
 * `APP_DB__HOST` refines `APP_DB` when both are set. @internal
 */
export function parseEnv(
  prefix: string,
  vars: Record<string, string | undefined>,
): ConfigTree {
  const entries: [string[], unknown][] = [];
  for (const [name, raw] of Object.entries(vars)) {
    if (raw === undefined || !name.startsWith(prefix) || name.length === prefix.length) continue;
    const path = name.slice(prefix.length).split("__").map(camelCase);
    if (path.some((p) => p === "")) continue;
    entries.push([path, parseValue(raw)]);
  }
  entries.sort((a, b) => a[0].length - b[0].length || a[0].join(".").localeCompare(b[0].join(".")));
  let tree: ConfigTree = {};
  for (const [path, value] of entries) tree = setAt(tree, path, value);
  return tree;
}

/** `MAX_TRANSFER` → `maxTransfer`. */
function camelCase(word: string): string {
  return word.toLowerCase().split("_").filter((w) => w !== "").map((w, i) =>
    i === 0 ? w : w[0]!.toUpperCase() + w.slice(1)
  ).join("");
}

function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
