/**
 * Logging: the `Logger` interface Troupe writes to, and a console implementation.
 *
 * @module
 */

/** Log lines. */
export interface Logger {
  /** Debug detail. */
  debug(msg: string, data?: Record<string, unknown>): void;
  /** Normal operation. */
  info(msg: string, data?: Record<string, unknown>): void;
  /** Something is off but handled. */
  warn(msg: string, data?: Record<string, unknown>): void;
  /** Something failed. */
  error(msg: string, data?: Record<string, unknown>): void;
}

/** The level names of {@link consoleLogger}. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/**
 * A logger writing one line per entry to the console, at or above `level`.
 *
 * @example
 * ```ts
 * import { consoleLogger } from "@troupe/troupe";
 * const log = consoleLogger("info", "node-1");
 * log.info("started", { actors: 3 });
 * ```
 */
export function consoleLogger(level: LogLevel = "warn", name = "troupe"): Logger {
  const min = LEVELS[level];
  const out = (lvl: Exclude<LogLevel, "silent">, msg: string, data?: Record<string, unknown>) => {
    if (LEVELS[lvl] < min) return;
    const line = `[${name}] ${lvl.toUpperCase()} ${msg}`;
    // One console method per level: with OpenTelemetry on, Deno exports console output as
    // log records with that severity (and the active span's trace and span ids).
    const fn = lvl === "error"
      ? console.error
      : lvl === "warn"
      ? console.warn
      : lvl === "info"
      ? console.info
      : console.debug;
    if (data) fn(line, data);
    else fn(line);
  };
  return {
    debug: (m, d) => out("debug", m, d),
    info: (m, d) => out("info", m, d),
    warn: (m, d) => out("warn", m, d),
    error: (m, d) => out("error", m, d),
  };
}
