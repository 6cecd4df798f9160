/**
 * The call object: one message on its way from a caller to a handler, with the one place that
 * decides how it ends. Whoever holds it (a mailbox, the remote router, the server side of a
 * request) settles it through these methods, and only the first settlement counts.
 *
 * @module
 */

import type { Envelope, StreamSink } from "../actor/envelope.ts";
import type { StreamChannel } from "../actor/stream.ts";
import type { Caller, MessageKind } from "../actor/ref.ts";

/** The data of a call. */
export interface CallInit {
  /** ask, tell or stream. */
  readonly kind: MessageKind;
  /** Actor type. */
  readonly type: string;
  /** Actor id ("" for a stateless worker without a routing hint). */
  readonly id: string;
  /** Handler name. */
  readonly handler: string;
  /** The decoded payload. */
  readonly payload: unknown;
  /** Encoded size of the payload in bytes (a lower bound for a local call). */
  readonly size: number;
  /** Deadline on the `performance.now()` clock. */
  readonly deadline: number;
  /** Turn ids of the call chain that sent it (deadlock detection). */
  readonly chain: readonly string[];
  /** Sender's raw token (verified only by the node that runs the handler). */
  readonly token?: string;
  /** Idempotency key. */
  readonly idempotencyKey?: string;
  /** For streams: where the items go. */
  readonly sink?: StreamSink;
  /**
   * Received on an actor's subject: every node subscribed to it got the same request (during a
   * take-over a stale owner and the new one both do), so it must never be handed on to another
   * node, which may have it already.
   */
  readonly shared?: boolean;
  /**
   * The caller's input stream, when the payload is one: a bounded channel the handler reads
   * (it is then also the payload on the node that runs the handler).
   */
  readonly input?: StreamChannel;
  /** The sender's trace context (src/observe/tracing.ts `traceOf`), when tracing is on. */
  readonly trace?: string;
}

/** How a call's outcomes reach its caller. Each is called at most once, and only one of them. */
export interface Settlement {
  /** The handler's result (an ask's reply; for a stream: the stream ended). */
  resolve(value: unknown): void;
  /** The error the caller sees. */
  reject(err: unknown): void;
  /** A mailbox took the message (a tell's answer). May be followed by resolve or reject. */
  accepted?(): void;
  /**
   * Refused before any processing, and safe to send again elsewhere (a closing node). A
   * remote caller is told so in the protocol; the default is `reject(err)`.
   */
  retry?(err: unknown): void;
  /**
   * Dropped unprocessed by a node that lost its lease: a stale owner stays silent toward a
   * remote caller (the live owner may answer the same request). The default is `reject(err)`.
   */
  drop?(err: unknown): void;
}

/** Where a call stands. */
export type CallState = "pending" | "accepted" | "settled";

/**
 * One message and its settle-once outcome.
 *
 * @example
 * ```ts
 * import { Call } from "./call.ts";
 * const call = new Call(
 *   { kind: "ask", type: "counter", id: "c1", handler: "inc", payload: 1, size: 1,
 *     deadline: performance.now() + 1000, chain: [] },
 *   { resolve: (v) => console.log("reply", v), reject: (e) => console.error(e) },
 * );
 * call.resolve(2); // logs "reply 2"
 * call.reject(new Error("late")); // ignored: the call is settled
 * ```
 */
export class Call implements Envelope {
  readonly kind: MessageKind;
  readonly type: string;
  readonly id: string;
  readonly handler: string;
  readonly payload: unknown;
  readonly size: number;
  readonly deadline: number;
  readonly chain: readonly string[];
  readonly token?: string;
  readonly sink?: StreamSink;
  readonly input?: StreamChannel;
  readonly shared: boolean;
  readonly trace?: string;
  #caller: Caller | undefined;
  #idempotencyKey: string | undefined;
  #key: string | undefined;
  readonly #on: Settlement;
  #state: CallState = "pending";
  #failure: unknown;
  #finally: (() => void)[] | undefined;

  /** Makes a call from its data and how it settles. */
  constructor(init: CallInit, on: Settlement) {
    this.kind = init.kind;
    this.type = init.type;
    this.id = init.id;
    this.handler = init.handler;
    this.payload = init.payload;
    this.size = init.size;
    this.deadline = init.deadline;
    this.chain = init.chain;
    if (init.token !== undefined) this.token = init.token;
    this.#idempotencyKey = init.idempotencyKey;
    if (init.sink !== undefined) this.sink = init.sink;
    if (init.input !== undefined) this.input = init.input;
    this.shared = init.shared === true;
    if (init.trace !== undefined) this.trace = init.trace;
    this.#on = on;
  }

  /** The sender's identity, once the node running the handler verified its token. */
  get caller(): Caller | undefined {
    return this.#caller;
  }

  /** The idempotency key, scoped by the verified caller (one caller never sees another's reply). */
  get idempotencyKey(): string | undefined {
    return this.#idempotencyKey;
  }

  /**
   * Records the identity verified for this call's token, on the node that runs the handler,
   * and scopes its idempotency key to it. Nothing else ever sets the caller.
   */
  authenticated(caller: Caller | undefined, scope: string): void {
    this.#caller = caller;
    if (this.#idempotencyKey !== undefined && scope !== "") {
      this.#idempotencyKey = `${scope}:${this.#idempotencyKey}`;
    }
  }

  /** `type/id`: the actor's key on a node. */
  get key(): string {
    return this.#key ??= `${this.type}/${this.id}`;
  }

  /** `type/id`, for messages. */
  get target(): string {
    return this.id === "" ? this.type : `${this.type}/${this.id}`;
  }

  /** Where the call stands. */
  get state(): CallState {
    return this.#state;
  }

  /** The error the call ended with (reject, retry or drop); undefined otherwise. */
  get failure(): unknown {
    return this.#failure;
  }

  /** Whether the caller has its outcome. */
  get settled(): boolean {
    return this.#state === "settled";
  }

  /** A mailbox took it. Idempotent; ignored once settled. */
  accept(): void {
    if (this.#state !== "pending") return;
    this.#state = "accepted";
    this.#on.accepted?.();
  }

  /** Settles with the handler's result. */
  resolve(value: unknown): void {
    if (this.#settle()) this.#on.resolve(value);
    this.#ended();
  }

  /** Settles with an error. */
  reject(err: unknown): void {
    if (this.#settle(err)) this.#on.reject(err);
    this.#ended();
  }

  /** Settles as "not processed, send it elsewhere" (see {@link Settlement.retry}). */
  retry(err: unknown): void {
    if (this.#settle(err)) (this.#on.retry ?? this.#on.reject)(err);
    this.#ended();
  }

  /** Settles as "dropped by a fenced node" (see {@link Settlement.drop}). */
  drop(err: unknown): void {
    if (this.#settle(err)) (this.#on.drop ?? this.#on.reject)(err);
    this.#ended();
  }

  /** Runs `fn` once the call is settled (at once if it is). */
  finally(fn: () => void): void {
    if (this.#state === "settled") return fn();
    (this.#finally ??= []).push(fn);
  }

  #settle(failure?: unknown): boolean {
    if (this.#state === "settled") return false;
    this.#state = "settled";
    this.#failure = failure;
    return true;
  }

  #ended(): void {
    const fns = this.#finally;
    this.#finally = undefined;
    if (fns) { for (const fn of fns) fn(); }
  }
}
