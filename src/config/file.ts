/**
 * `fromFile(path)`: config from a JSON or YAML file, reloaded when it changes.
 *
 * The file's directory is watched rather than the file: editors and deploy tools often write a
 * temporary file and rename it over the old one (and Kubernetes swaps a symlinked directory),
 * which replaces the file a file watch would follow. When the path is a symlink, the directory
 * of every link on the way and of the file it finally names are watched as well (an edit of a
 * link's target in another directory is no event in the link's directory); the set is worked
 * out again on every re-read, so a link pointed elsewhere is followed. Every event schedules a
 * re-read after a short debounce; a re-read that finds the same text does nothing. A watch
 * that stops (its directory removed) shows in `health()` until a re-read sets it up again.
 *
 * @module
 */

import { dirname, isAbsolute, resolve } from "node:path";
import type { ConfigSource, ConfigSourceContext, RunningConfigSource } from "./types.ts";
import type { TimerId } from "../util/clock.ts";

/** Options of {@link fromFile}. */
export interface FromFileOptions {
  /**
   * Whether a missing file is an empty document instead of an error (at start and later).
   * @default {false}
   */
  optional?: boolean;
  /**
   * Quiet time after a change in the directory before the file is re-read, ms (bursts of events
   * are re-read at least every ten times this).
   * @default {50}
   */
  debounce?: number;
  /**
   * The file's format. YAML is parsed by the `yaml` package (loaded only when used).
   * @default {"yaml" for names ending in `.yaml` or `.yml`, else "json"}
   */
  format?: "json" | "yaml";
  /**
   * Parses the file's text into a document (say, a TOML parser); overrides `format`. Its error
   * messages should not quote the file: they end up in logs and `health()`.
   * @default {the parser of `format`, with excerpts of the text removed from its errors}
   */
  parse?: (text: string) => unknown;
}

/**
 * Config from a JSON or YAML file, reloaded within a second of a change (editors' write-to-temp then
 * rename included). A malformed update keeps the last good value, logs a warning and shows in
 * `system.config.health()` until a good version is written. At start, a missing (unless
 * `optional`) or malformed file fails `createSystem`.
 *
 * @example
 * ```ts
 * import { createSystem, fromFile } from "@troupe/troupe";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, '{ "limits": { "maxTransfer": 500 } }');
 * const system = await createSystem({ config: { sources: [fromFile(path)] } });
 * system.config.get("limits.maxTransfer", 0); // 500
 * await system.close();
 * ```
 */
export function fromFile(path: string, options: FromFileOptions = {}): ConfigSource {
  if (typeof path !== "string" || path === "") throw new TypeError("fromFile() needs a path");
  const debounce = options.debounce ?? 50;
  if (!(debounce >= 0)) throw new RangeError(`fromFile(): debounce must be ≥ 0, got ${debounce}`);
  const format = options.format ?? (/\.ya?ml$/i.test(path) ? "yaml" : "json");
  if (format !== "json" && format !== "yaml") {
    throw new TypeError(`fromFile(): format must be "json" or "yaml", got "${format}"`);
  }
  return {
    name: `file:${path}`,
    async start(context) {
      const parse = options.parse ?? (format === "yaml" ? await yamlParser() : parseJson);
      const file = new FileSource(resolve(path), path, options.optional ?? false, debounce, parse);
      await file.start(context);
      return file;
    },
  };
}

/** Most symlinks followed from the configured path to the file. */
const MAX_LINKS = 16;

/**
 * The directories to watch for `path`: its own, and, when it is a symlink, the directory of
 * every link it goes through and of the file at the end (sorted, without repeats).
 */
async function watchedDirs(path: string): Promise<string[]> {
  const dirs = new Set([dirname(path)]);
  let at = path;
  for (let i = 0; i < MAX_LINKS; i++) {
    let target: string;
    try {
      target = await Deno.readLink(at);
    } catch {
      break; // not a link (or gone): `at` is the end of the chain
    }
    at = isAbsolute(target) ? target : resolve(dirname(at), target);
    dirs.add(dirname(at));
  }
  try {
    dirs.add(dirname(await Deno.realPath(path))); // directories that are links on the way
  } catch {
    // a dangling link or no file: reading it says so
  }
  return [...dirs].sort();
}

class FileSource implements RunningConfigSource {
  readonly #abs: string;
  readonly #shown: string;
  readonly #optional: boolean;
  readonly #debounce: number;
  readonly #parse: (text: string) => unknown;
  #context!: ConfigSourceContext;
  #watcher: Deno.FsWatcher | undefined;
  #dirs = "";
  readonly #loops = new Set<Promise<void>>();
  #started = false;
  #reloading: Promise<void> = Promise.resolve();
  #timer: TimerId | undefined;
  #burstAt: number | undefined;
  #lastText: string | undefined;
  /** Why the watch is not working, while it is not. */
  #watchError: string | undefined;
  #stopped = false;

  constructor(
    abs: string,
    shown: string,
    optional: boolean,
    debounce: number,
    parse: (text: string) => unknown,
  ) {
    this.#abs = abs;
    this.#shown = shown;
    this.#optional = optional;
    this.#debounce = debounce;
    this.#parse = parse;
  }

  async start(context: ConfigSourceContext): Promise<void> {
    this.#context = context;
    // Watch first, so a change between the first read and the watch is not missed.
    this.#watch(await watchedDirs(this.#abs));
    try {
      const text = await this.#read();
      if (text === undefined && !this.#optional) {
        throw new Error(`File "${this.#shown}" does not exist`);
      }
      const doc = text === undefined ? {} : this.#parseText(text);
      this.#lastText = text;
      if (!context.update(doc)) throw new Error(`File "${this.#shown}" was refused`);
      this.#started = true;
    } catch (err) {
      this.#stopped = true;
      this.#closeWatcher();
      throw err;
    }
  }

  /** Watches `dirs` (replacing the watch of another set). */
  #watch(dirs: string[]): void {
    const key = dirs.join("\n");
    if (key === this.#dirs && this.#watcher) return;
    this.#closeWatcher();
    this.#dirs = key;
    let watcher: Deno.FsWatcher;
    try {
      watcher = this.#watcher = Deno.watchFs(dirs, { recursive: false });
    } catch (err) {
      // a directory on the way is missing: the next event of another one, or none
      this.#watcher = undefined;
      this.#dirs = "";
      if (!this.#started) throw err;
      this.#watchFailed(`Cannot watch "${this.#shown}": ${errorText(err)}`);
      return;
    }
    const loop = (async () => {
      try {
        for await (const _ of watcher) this.#schedule();
        if (!this.#stopped && this.#watcher === watcher) {
          this.#watchFailed(`Watching "${this.#shown}" stopped`);
        }
      } catch (err) {
        if (!this.#stopped && this.#watcher === watcher) {
          this.#watchFailed(`Watching "${this.#shown}" stopped: ${errorText(err)}`);
        }
      }
    })();
    this.#loops.add(loop);
    loop.finally(() => this.#loops.delete(loop));
  }

  #watchFailed(message: string): void {
    this.#watcher = undefined;
    this.#dirs = "";
    this.#watchError = message;
    this.#context.logger.warn(message);
    this.#context.fail(`${message}: edits of the file are not seen`);
  }

  #closeWatcher(): void {
    const w = this.#watcher;
    this.#watcher = undefined;
    try {
      w?.close();
    } catch {
      // closed already
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    const clock = this.#context.clock;
    const now = clock.monotonic();
    this.#burstAt ??= now;
    clock.clearTimeout(this.#timer);
    const wait = Math.min(this.#debounce, this.#burstAt + 10 * this.#debounce - now);
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined;
      this.#burstAt = undefined;
      this.#reloading = this.#reloading.then(() => this.#reload());
    }, Math.max(0, wait));
  }

  async #reload(): Promise<void> {
    if (this.#stopped) return;
    // follow the links again: a link pointed elsewhere (or a directory swapped) moves the watch
    const dirs = await watchedDirs(this.#abs);
    if (this.#stopped) return;
    const moved = dirs.join("\n") !== this.#dirs;
    this.#watch(dirs);
    if (moved && this.#watcher) this.#schedule(); // an edit between the old watch and the new
    let text: string | undefined;
    try {
      text = await this.#read();
    } catch (err) {
      if (!this.#stopped) this.#context.fail(`Cannot read "${this.#shown}": ${errorText(err)}`);
      return;
    }
    if (this.#stopped) return;
    const rewatched = this.#watchError !== undefined && this.#watcher !== undefined;
    if (rewatched) this.#watchError = undefined;
    if (text === this.#lastText && !rewatched) return;
    this.#lastText = text;
    if (text === undefined) {
      if (this.#optional) this.#context.update({});
      else this.#context.fail(`File "${this.#shown}" does not exist`);
      return;
    }
    let doc: unknown;
    try {
      doc = this.#parseText(text);
    } catch (err) {
      this.#context.fail(errorText(err));
      return;
    }
    this.#context.update(doc);
  }

  /** The file's text, or undefined when it does not exist. */
  async #read(): Promise<string | undefined> {
    try {
      return await Deno.readTextFile(this.#abs);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
  }

  #parseText(text: string): unknown {
    let doc: unknown;
    try {
      doc = this.#parse(text);
    } catch (err) {
      throw new Error(`Cannot parse "${this.#shown}": ${errorText(err)}`);
    }
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
      throw new Error(`File "${this.#shown}" does not hold an object`);
    }
    return doc;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#context?.clock.clearTimeout(this.#timer);
    this.#closeWatcher();
    await Promise.all([...this.#loops]);
    await this.#reloading;
  }
}

/**
 * `JSON.parse`, with the excerpt of the text that V8 quotes in some errors removed (it may hold
 * a secret). @internal
 */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = errorText(err).replace(/, ".*" is not valid JSON$/s, " (not valid JSON)");
    throw new SyntaxError(message);
  }
}

/**
 * The YAML parser (the `yaml` package, imported on first use): one document, YAML 1.2 core
 * schema, unique keys, aliases bounded; errors give the problem's code and position only (the
 * package's messages quote the text). @internal
 */
export async function yamlParser(): Promise<(text: string) => unknown> {
  const yaml = await import("yaml");
  return function parseYaml(text: string): unknown {
    try {
      return yaml.parse(text, { logLevel: "error", maxAliasCount: 100, uniqueKeys: true });
    } catch (err) {
      if (err instanceof yaml.YAMLError) {
        const pos = err.linePos?.[0];
        const where = pos ? ` at line ${pos.line}, column ${pos.col}` : "";
        throw new SyntaxError(`Invalid YAML (${err.code})${where}`);
      }
      throw err;
    }
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
