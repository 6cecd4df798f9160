/**
 * The in-memory form of a message on its way to a handler, and the ports an activation uses.
 *
 * @module
 */

import type { Caller, MessageKind } from "./ref.ts";

/** Where a streaming handler's items go; `push` waits for credit (backpressure). */
export interface StreamSink {
  /** Sends one item; resolves when the consumer has room for more. Rejects once cancelled. */
  push(item: unknown): Promise<void>;
  /** Ends the stream normally. */
  end(): void;
  /** Ends the stream with an error. */
  error(err: unknown): void;
  /** Aborted when the consumer cancels. */
  readonly signal: AbortSignal;
}

/** A message inside the node. */
export interface Envelope {
  /** ask, tell or stream. */
  readonly kind: MessageKind;
  /** Handler name. */
  readonly handler: string;
  /** Decoded payload. */
  readonly payload: unknown;
  /** Deadline on the `performance.now()` clock. */
  readonly deadline: number;
  /** Turn ids of the call chain that sent it. */
  readonly chain: readonly string[];
  /** Verified sender identity. */
  readonly caller?: Caller;
  /** Sender's raw token. */
  readonly token?: string;
  /** Idempotency key. */
  readonly idempotencyKey?: string;
  /** Called with the handler's result (ask) once its events are durable. */
  resolve(value: unknown): void;
  /** Called with the error the caller should see. */
  reject(err: unknown): void;
  /** Called once the mailbox took it, before its handler runs (a tell's answer). */
  accept(): void;
  /**
   * Called instead of `reject` when a node that lost its lease drops the message unprocessed:
   * a remote caller hears nothing from the stale node (the live owner may answer it).
   */
  drop(err: unknown): void;
  /** For streams: where items go. */
  readonly sink?: StreamSink;
}

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
    const fn = lvl === "error" ? console.error : lvl === "warn" ? console.warn : console.log;
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
