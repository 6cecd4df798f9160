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
  /** Deadline on the node clock's monotonic time (`clock.monotonic()`). */
  readonly deadline: number;
  /** Turn ids of the call chain that sent it. */
  readonly chain: readonly string[];
  /** Verified sender identity. */
  readonly caller: Caller | undefined;
  /** Sender's raw token. */
  readonly token?: string;
  /** Idempotency key. */
  readonly idempotencyKey: string | undefined;
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

export { consoleLogger, type Logger, type LogLevel } from "../util/log.ts";
