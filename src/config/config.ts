/**
 * The config of a node: starts its sources, merges their documents over the defaults, checks
 * every new tree with `validate`, keeps the last good one when an update is refused, tells
 * watchers about effective changes, and writes through the writable source.
 *
 * Each accepted change makes a new frozen tree inside a new {@link ConfigView}: whoever holds a
 * view (a turn's `ctx.config`) keeps seeing the version it took.
 *
 * @module
 */

import { consoleLogger, type Logger } from "../util/log.ts";
import { ClosedError } from "../errors.ts";
import type { MeshConnection } from "../mesh/types.ts";
import { type Clock, systemClock } from "../util/clock.ts";
import {
  type ConfigTree,
  deepEqual,
  deepFreeze,
  deepMerge,
  getAt,
  isPlainObject,
  redactText,
  redactTree,
  secretMatcher,
  secretValues,
  setAt,
  splitPath,
} from "./_tree.ts";
import type {
  Config,
  ConfigOptions,
  ConfigSource,
  ConfigSourceContext,
  ConfigView,
  ConfigWatch,
  RunningConfigSource,
  SourceHealth,
  Widen,
} from "./types.ts";

/**
 * A config that could not be used: a source failed to start, `validate` refused the first tree
 * or a `set()`. Its message names the source and has secrets redacted.
 *
 * @example
 * ```ts
 * import { ConfigError, createSystem } from "@troupe/troupe";
 * try {
 *   await createSystem({ config: { validate: () => { throw new Error("no"); } } });
 * } catch (err) {
 *   console.log(err instanceof ConfigError); // true
 * }
 * ```
 */
export class ConfigError extends Error {
  /** The source concerned, when one is. */
  readonly source: string | undefined;
  /**
   * Makes the error.
   *
   * @param message What failed (secrets already redacted).
   * @param source The source's name, when one is concerned.
   */
  constructor(message: string, source?: string) {
    super(message);
    this.name = "ConfigError";
    this.source = source;
  }
}

/** What the config of a system is given by it. @internal */
export interface ConfigEnvironment {
  /** The node's id. */
  node?: string;
  /** Where warnings go. */
  logger?: Logger;
  /** For cluster-wide sources. */
  mesh?: MeshConnection;
  /** Bucket name prefix. */
  prefix?: string;
  /** The node's clock, for the sources. @default {systemClock} */
  clock?: Clock;
}

/** A config with its lifecycle (what a system owns). @internal */
export interface ManagedConfig extends Config, AsyncDisposable {
  /** Stops every source and watcher. Idempotent. */
  close(): Promise<void>;
}

interface Shared {
  readonly isSecret: (path: readonly string[]) => boolean;
  readonly onMismatch: (path: string, actual: string, expected: string) => void;
}

function kindOf(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/** One immutable version of the merged tree. */
class ConfigSnapshot implements ConfigView {
  readonly version: number;
  readonly tree: ConfigTree;
  readonly #shared: Shared;

  constructor(tree: ConfigTree, version: number, shared: Shared) {
    this.tree = tree;
    this.version = version;
    this.#shared = shared;
  }

  get(path: string): unknown;
  get<T>(path: string, fallback: T): Widen<T>;
  get(path: string, ...fallback: [] | [unknown]): unknown {
    const value = getAt(this.tree, splitPath(path));
    if (fallback.length === 0) return value;
    const fb = fallback[0];
    if (value === undefined) return fb;
    if (fb === undefined || fb === null) return value;
    if (kindOf(value) !== kindOf(fb)) {
      this.#shared.onMismatch(path, kindOf(value), kindOf(fb));
      return fb;
    }
    return value;
  }

  toJSON(): unknown {
    return redactTree(this.tree, this.#shared.isSecret);
  }
}

interface Slot {
  readonly source: ConfigSource;
  running: RunningConfigSource | undefined;
  doc: ConfigTree;
  ok: boolean;
  error: string | undefined;
  revision: number | undefined;
  updatedAt: number | undefined;
}

interface Watcher {
  readonly path: string[];
  readonly fn: (value: unknown, previous: unknown) => void;
}

/**
 * Starts a config: every source, then the first merge and `validate`. Rejects with a
 * {@link ConfigError} when a source fails to start or `validate` refuses the first tree.
 * `createSystem` calls it; exported for tests and for using a config without a system.
 *
 * @example
 * ```ts
 * import { createConfig } from "./config.ts";
 * await using config = await createConfig({ defaults: { a: 1 } });
 * config.get("a", 0); // 1
 * ```
 * @internal
 */
export async function createConfig(
  options: ConfigOptions = {},
  env: ConfigEnvironment = {},
): Promise<ManagedConfig> {
  const config = new ConfigImpl(options, env);
  await config.start();
  return config;
}

class ConfigImpl implements ManagedConfig {
  readonly #slots: Slot[];
  readonly #defaults: ConfigTree;
  readonly #validate: ((tree: Record<string, unknown>) => unknown) | undefined;
  readonly #shared: Shared;
  readonly #log: Logger;
  readonly #env: ConfigEnvironment;
  readonly #watchers = new Set<Watcher>();
  readonly #abort = new AbortController();
  readonly #mismatched = new Set<string>();
  #current: ConfigSnapshot;
  #started = false;
  #closing: Promise<void> | undefined;

  constructor(options: ConfigOptions, env: ConfigEnvironment) {
    const sources = options.sources ?? [];
    for (const s of sources) {
      if (!s || typeof s.name !== "string" || typeof s.start !== "function") {
        throw new TypeError(
          "config.sources: every entry must be a ConfigSource (fromEnv, fromFile, fromKv or { name, start })",
        );
      }
    }
    if (options.defaults !== undefined && !isPlainObject(options.defaults)) {
      throw new TypeError("config.defaults must be a plain object");
    }
    this.#slots = sources.map((source) => ({
      source,
      running: undefined,
      doc: {},
      ok: true,
      error: undefined,
      revision: undefined,
      updatedAt: undefined,
    }));
    this.#defaults = deepFreeze(structuredClone(options.defaults ?? {}));
    this.#validate = options.validate;
    this.#env = env;
    this.#log = env.logger ?? consoleLogger("warn", env.node ?? "config");
    const isSecret = secretMatcher(options.secrets ?? []);
    this.#shared = {
      isSecret,
      onMismatch: (path, actual, expected) => {
        const key = `${this.#current.version}:${path}`;
        if (this.#mismatched.has(key)) return;
        this.#mismatched.add(key);
        this.#log.warn(
          `Config "${path}" is a(n) ${actual} where its fallback is a(n) ${expected}: using the fallback`,
        );
      },
    };
    this.#current = new ConfigSnapshot(this.#defaults, 0, this.#shared);
  }

  async start(): Promise<void> {
    const results = await Promise.allSettled(
      this.#slots.map(async (slot) => {
        slot.running = await slot.source.start(this.#contextFor(slot));
      }),
    );
    const failed = results.findIndex((r) => r.status === "rejected");
    if (failed >= 0) {
      const slot = this.#slots[failed]!;
      const reason = (results[failed] as PromiseRejectedResult).reason;
      await this.close();
      throw new ConfigError(
        `Config source "${slot.source.name}" failed to start: ${this.#redact(errorText(reason))}`,
        slot.source.name,
      );
    }
    let tree: ConfigTree;
    try {
      tree = this.#compose(this.#slots.map((s) => s.doc));
    } catch (err) {
      await this.close();
      throw new ConfigError(
        `Config refused at start by validate: ${this.#redact(errorText(err))}`,
      );
    }
    this.#current = new ConfigSnapshot(tree, 1, this.#shared);
    this.#started = true;
  }

  // ---- ConfigView ----

  get version(): number {
    return this.#current.version;
  }

  get(path: string): unknown;
  get<T>(path: string, fallback: T): Widen<T>;
  get(path: string, ...fallback: [] | [unknown]): unknown {
    return (this.#current.get as (p: string, ...f: unknown[]) => unknown)(path, ...fallback);
  }

  toJSON(): unknown {
    return this.#current.toJSON();
  }

  // ---- Config ----

  view(): ConfigView {
    return this.#current;
  }

  watch(path: string, fn: (value: unknown, previous: unknown) => void): ConfigWatch {
    if (typeof fn !== "function") throw new TypeError("config.watch() needs a callback");
    const watcher: Watcher = { path: splitPath(path), fn };
    if (!this.#closing) this.#watchers.add(watcher);
    const stop = () => void this.#watchers.delete(watcher);
    return { stop, [Symbol.dispose]: stop };
  }

  async set(path: string, value: unknown): Promise<number> {
    if (this.#closing) throw new ClosedError("The config is closed");
    const segments = splitPath(path);
    if (segments.length === 0) {
      throw new TypeError('config.set() needs a path below the root, such as "limits.max"');
    }
    if (value === undefined) throw new TypeError("config.set() needs a value (not undefined)");
    const slot = this.#slots.findLast((s) => s.running?.set !== undefined);
    if (!slot) {
      throw new TypeError(
        "config.set() needs a writable source: add fromKv(bucket) to config.sources",
      );
    }
    let copy: unknown;
    try {
      copy = JSON.parse(JSON.stringify(value));
    } catch (err) {
      throw new TypeError(`config.set("${path}"): the value is not JSON: ${errorText(err)}`);
    }
    const docs = this.#slots.map((s) => s === slot ? setAt(s.doc, segments, copy) : s.doc);
    try {
      this.#compose(docs);
    } catch (err) {
      throw new ConfigError(
        `config.set("${path}") refused by validate: ${this.#redact(errorText(err), docs)}`,
        slot.source.name,
      );
    }
    return await slot.running!.set!(path, copy);
  }

  health(): SourceHealth[] {
    return this.#slots.map((s) => ({
      source: s.source.name,
      ok: s.ok,
      ...(s.error !== undefined ? { error: s.error } : {}),
      ...(s.revision !== undefined ? { revision: s.revision } : {}),
      ...(s.updatedAt !== undefined ? { updatedAt: s.updatedAt } : {}),
    }));
  }

  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    this.#abort.abort(new ClosedError("The config is closed"));
    this.#watchers.clear();
    await Promise.all(this.#slots.map(async (slot) => {
      const running = slot.running;
      slot.running = undefined;
      try {
        await running?.stop();
      } catch (err) {
        this.#log.warn(`Config source "${slot.source.name}" failed to stop`, {
          error: this.#redact(errorText(err)),
        });
      }
    }));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---- updates ----

  #contextFor(slot: Slot): ConfigSourceContext {
    const env = this.#env;
    return {
      update: (document, options) => this.#update(slot, document, options?.revision),
      fail: (error, options) => this.#fail(slot, errorText(error), options?.revision),
      logger: this.#log,
      node: env.node ?? "",
      mesh: env.mesh,
      prefix: env.prefix ?? "troupe",
      signal: this.#abort.signal,
      clock: env.clock ?? systemClock,
    };
  }

  #update(slot: Slot, document: unknown, revision: number | undefined): boolean {
    if (this.#closing) return false;
    if (!isPlainObject(document)) {
      this.#fail(slot, `the document is a(n) ${kindOf(document)}, not an object`, revision);
      return false;
    }
    let doc: ConfigTree;
    try {
      doc = deepFreeze(structuredClone(document));
    } catch (err) {
      this.#fail(slot, `the document cannot be copied: ${errorText(err)}`, revision);
      return false;
    }
    if (!this.#started) {
      this.#accept(slot, doc, revision);
      return true;
    }
    const docs = this.#slots.map((s) => s === slot ? doc : s.doc);
    let tree: ConfigTree;
    try {
      tree = this.#compose(docs);
    } catch (err) {
      this.#fail(slot, `refused by validate: ${errorText(err)}`, revision, docs);
      return false;
    }
    this.#accept(slot, doc, revision);
    this.#publish(tree);
    return true;
  }

  #accept(slot: Slot, doc: ConfigTree, revision: number | undefined): void {
    if (!slot.ok) this.#log.info(`Config source "${slot.source.name}" recovered`);
    slot.doc = doc;
    slot.ok = true;
    slot.error = undefined;
    if (revision !== undefined) slot.revision = revision;
    slot.updatedAt = (this.#env.clock ?? systemClock).now();
  }

  #fail(
    slot: Slot,
    message: string,
    revision: number | undefined,
    candidates?: readonly unknown[],
  ): void {
    if (this.#closing) return;
    const error = this.#redact(message, candidates);
    slot.ok = false;
    slot.error = error;
    if (revision !== undefined) slot.revision = revision;
    slot.updatedAt = (this.#env.clock ?? systemClock).now();
    this.#log.warn(
      `Config update from "${slot.source.name}" refused, keeping its last good value: ${error}`,
    );
  }

  /** Merges documents over the defaults and validates: throws what `validate` throws. */
  #compose(docs: readonly ConfigTree[]): ConfigTree {
    let merged = this.#defaults;
    for (const doc of docs) merged = deepMerge(merged, doc);
    if (!this.#validate) return deepFreeze(merged);
    const copy = structuredClone(merged) as Record<string, unknown>;
    const out = this.#validate(copy);
    const tree = out === undefined ? copy : out;
    if (!isPlainObject(tree)) {
      throw new TypeError(`validate returned a(n) ${kindOf(tree)}, not an object`);
    }
    return deepFreeze(tree);
  }

  /** Swaps in a new version when the tree changed, then tells the watchers that are concerned. */
  #publish(tree: ConfigTree): void {
    const previous = this.#current;
    if (deepEqual(previous.tree, tree)) return;
    const next = new ConfigSnapshot(tree, previous.version + 1, this.#shared);
    this.#current = next;
    for (const w of [...this.#watchers]) {
      if (!this.#watchers.has(w)) continue;
      const before = getAt(previous.tree, w.path);
      const after = getAt(tree, w.path);
      if (deepEqual(before, after)) continue;
      try {
        w.fn(after, before);
      } catch (err) {
        this.#log.error(`A config watcher of "${w.path.join(".")}" threw`, {
          error: this.#redact(errorText(err)),
        });
      }
    }
  }

  /** Redacts every known secret value (current tree, sources' documents, `extra`) from text. */
  #redact(text: string, extra: readonly unknown[] = []): string {
    const isSecret = this.#shared.isSecret;
    const values = secretValues(this.#current.tree, isSecret);
    for (const s of this.#slots) secretValues(s.doc, isSecret, values);
    for (const doc of extra) secretValues(doc, isSecret, values);
    return redactText(text, values);
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
