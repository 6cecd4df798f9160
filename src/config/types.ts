/**
 * Dynamic config: the types of `system.config`, of `ctx.config` and of config sources.
 *
 * A config is a stack of sources (a file, the environment, a cluster-wide KV bucket, or your
 * own), deep-merged over `defaults`, later sources winning. Every change makes a new,
 * frozen tree: a view taken once (as `ctx.config` is, at the start of each turn) never changes.
 *
 * @module
 */

import type { Logger } from "../util/log.ts";
import type { MeshConnection } from "../mesh/types.ts";
import type { Clock } from "../util/clock.ts";

/** `T` with literal types widened (`1000` → `number`), so `get(path, 1000)` is a `number`. */
export type Widen<T> = T extends string ? string
  : T extends number ? number
  : T extends boolean ? boolean
  : T extends bigint ? bigint
  : T;

/**
 * One immutable version of the merged config.
 *
 * @example
 * ```ts
 * import { createSystem } from "@troupe/troupe";
 * const system = await createSystem({ config: { defaults: { limits: { maxTransfer: 1000 } } } });
 * const view = system.config.view();          // this version, whatever happens next
 * view.get("limits.maxTransfer", 0);          // 1000, typed as number
 * await system.close();
 * ```
 */
export interface ConfigView {
  /** Local version number: 1 for the first tree, +1 for every effective change. */
  readonly version: number;
  /** The value at a dotted path (`""` for the whole tree), or undefined. */
  get(path: string): unknown;
  /**
   * The value at a dotted path, or `fallback` when it is missing or of another kind than the
   * fallback (a string where the fallback is a number, an object where it is an array…).
   */
  get<T>(path: string, fallback: T): Widen<T>;
  /** The whole tree with secret values replaced by `"[redacted]"` (what `JSON.stringify` shows). */
  toJSON(): unknown;
}

/** A registration made by {@link Config.watch}. */
export interface ConfigWatch extends Disposable {
  /** Stops the callbacks. Idempotent. */
  stop(): void;
}

/** How one source is doing: see {@link Config.health}. */
export interface SourceHealth {
  /** The source's name: `"file:./config.json"`, `"env:APP_"`, `"kv:app-config"`. */
  readonly source: string;
  /** False while the source's latest update was refused (its last good value is in use). */
  readonly ok: boolean;
  /** Why the latest update was refused (secrets redacted). */
  readonly error?: string;
  /** The latest revision the source reported (the KV revision for `fromKv`). */
  readonly revision?: number;
  /** When the source's value was last accepted or refused (ms since the epoch). */
  readonly updatedAt?: number;
}

/**
 * `system.config`: the live, merged config of a node.
 *
 * @example
 * ```ts
 * import { createSystem, fromKv } from "@troupe/troupe";
 * const system = await createSystem({
 *   config: { sources: [fromKv("app-config")], defaults: { limits: { maxTransfer: 1000 } } },
 * });
 * const w = system.config.watch("limits", (value, previous) => console.log(previous, "→", value));
 * await system.config.set("limits.maxTransfer", 500); // every node of the mesh sees it
 * system.config.get("limits.maxTransfer", 1000);       // 500
 * w.stop();
 * await system.close();
 * ```
 */
export interface Config extends ConfigView {
  /** The current version, fixed: later changes make new views. */
  view(): ConfigView;
  /**
   * Calls `fn(value, previous)` once per effective change of the subtree at `path` (compared
   * by value), whichever source changed it. Not called for the current value.
   */
  watch(path: string, fn: (value: unknown, previous: unknown) => void): ConfigWatch;
  /**
   * Writes `value` at `path` to the writable source (the last `fromKv` of `sources`) and
   * resolves with its revision once this node applied it. Every node watching the bucket
   * applies it too. Rejects (writing nothing) when `validate` refuses the result. A later
   * source that sets the same path (say `fromEnv` after `fromKv`) still wins.
   */
  set(path: string, value: unknown): Promise<number>;
  /** Per source, in `sources` order: whether its latest update was accepted. */
  health(): SourceHealth[];
}

/** Options of the config: `createSystem({ config })`. */
export interface ConfigOptions {
  /** Sources, lowest precedence first: later sources win, merged deeply. @default {[]} */
  sources?: readonly ConfigSource[];
  /** Values under every source. @default {{}} */
  defaults?: Record<string, unknown>;
  /**
   * Checks (and may normalize) each new merged tree: return it (or a replacement), or throw to
   * refuse the update, which keeps the last good tree and shows in `health()`. Synchronous.
   * At start there is no last good tree, so a throw fails `createSystem`.
   * @default {accepts everything}
   */
  validate?: (tree: Record<string, unknown>) => unknown;
  /**
   * Paths whose values are secrets (`*` matches one segment, `**` any number): redacted as
   * `"[redacted]"` in warnings, `health()` errors, thrown errors and `toJSON()`.
   * @default {[]}
   */
  secrets?: readonly string[];
}

/**
 * What a source gets from the config when it starts. A source reports each new document
 * (a plain object) with `update`, or a bad one with `fail` (its last good document stays).
 */
export interface ConfigSourceContext {
  /** Reports the source's whole new document; false when it was refused. */
  update(document: unknown, options?: { revision?: number }): boolean;
  /** Reports a bad update (a malformed file, a broken entry): the last good value stays. */
  fail(error: unknown, options?: { revision?: number }): void;
  /** The node's logger. */
  readonly logger: Logger;
  /** The node's id. */
  readonly node: string;
  /** The node's mesh connection (for cluster-wide sources); undefined outside a system. */
  readonly mesh: MeshConnection | undefined;
  /** The mesh's prefix, first part of bucket names. */
  readonly prefix: string;
  /** Aborted when the config closes. */
  readonly signal: AbortSignal;
  /**
   * The node's clock (`createSystem({ clock })`): a source that polls, debounces or waits
   * does it on this clock's timers, so that tests on a virtual clock drive it.
   */
  readonly clock: Clock;
}

/** A source once started: see {@link ConfigSource}. */
export interface RunningConfigSource {
  /** Stops watching; after it resolves the source reports nothing more. */
  stop(): void | Promise<void>;
  /** Writes a value (only sources that can: `fromKv`); resolves with its revision. */
  set?(path: string, value: unknown): Promise<number>;
}

/**
 * A config source: a description that each system starts on its own. `start` reports the
 * first document through `context.update` before it resolves (or throws: then `createSystem`
 * fails), then reports later changes the same way until stopped.
 *
 * @example
 * ```ts
 * import { createSystem } from "@troupe/troupe";
 * import { type ConfigSource } from "@troupe/troupe/spi";
 *
 * // a source that re-reads a value every 5 s
 * function fromFlags(read: () => Record<string, unknown>): ConfigSource {
 *   return {
 *     name: "flags",
 *     start(context) {
 *       context.update(read());
 *       const timer = context.clock.setInterval(() => {
 *         try {
 *           context.update(read());
 *         } catch (err) {
 *           context.fail(err); // the last good value stays
 *         }
 *       }, 5_000);
 *       return { stop: () => context.clock.clearInterval(timer) };
 *     },
 *   };
 * }
 *
 * const system = await createSystem({ config: { sources: [fromFlags(() => ({ beta: true }))] } });
 * system.config.get("beta", false); // true
 * await system.close();
 * ```
 */
export interface ConfigSource {
  /** A name for `health()` and logs, such as `"file:./config.json"`. */
  readonly name: string;
  /** Starts the source for one config (one system). */
  start(context: ConfigSourceContext): RunningConfigSource | Promise<RunningConfigSource>;
}
