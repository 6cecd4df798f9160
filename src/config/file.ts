/**
 * `fromFile(path)`: config from a JSON or YAML file, reloaded when it changes.
 *
 * The file's directory is watched rather than the file: editors and deploy tools often write a
 * temporary file and rename it over the old one (and Kubernetes swaps a symlinked directory),
 * which replaces the file a file watch would follow. Every event in the directory schedules a
 * re-read after a short debounce; a re-read that finds the same text does nothing.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import type { ConfigSource, ConfigSourceContext, RunningConfigSource } from "./types.ts";

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

class FileSource implements RunningConfigSource {
  readonly #abs: string;
  readonly #shown: string;
  readonly #optional: boolean;
  readonly #debounce: number;
  readonly #parse: (text: string) => unknown;
  #context!: ConfigSourceContext;
  #watcher: Deno.FsWatcher | undefined;
  #loop: Promise<void> = Promise.resolve();
  #reloading: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #burstAt: number | undefined;
  #lastText: string | undefined;
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
    const watcher = this.#watcher = Deno.watchFs(dirname(this.#abs), { recursive: false });
    try {
      const text = await this.#read();
      if (text === undefined && !this.#optional) {
        throw new Error(`File "${this.#shown}" does not exist`);
      }
      const doc = text === undefined ? {} : this.#parseText(text);
      this.#lastText = text;
      if (!context.update(doc)) throw new Error(`File "${this.#shown}" was refused`);
    } catch (err) {
      watcher.close();
      throw err;
    }
    this.#loop = (async () => {
      try {
        for await (const _ of watcher) this.#schedule();
      } catch (err) {
        if (!this.#stopped) {
          context.logger.warn(`Watching "${this.#shown}" stopped: ${errorText(err)}`);
        }
      }
    })();
  }

  #schedule(): void {
    if (this.#stopped) return;
    const now = performance.now();
    this.#burstAt ??= now;
    clearTimeout(this.#timer);
    const wait = Math.min(this.#debounce, this.#burstAt + 10 * this.#debounce - now);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#burstAt = undefined;
      this.#reloading = this.#reloading.then(() => this.#reload());
    }, Math.max(0, wait));
  }

  async #reload(): Promise<void> {
    if (this.#stopped) return;
    let text: string | undefined;
    try {
      text = await this.#read();
    } catch (err) {
      if (!this.#stopped) this.#context.fail(`Cannot read "${this.#shown}": ${errorText(err)}`);
      return;
    }
    if (this.#stopped || text === this.#lastText) return;
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
    clearTimeout(this.#timer);
    try {
      this.#watcher?.close();
    } catch {
      // closed already
    }
    await this.#loop;
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
