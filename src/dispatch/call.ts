/**
 * The call object: one message on its way from a caller to a handler, with the one place that
 * decides how it ends. Its data never changes once it is made: what the path learns on the way
 * (the verified caller) is recorded once, beside the data, and what depends on it (the
 * idempotency key scoped by caller) is derived, never written back. Whoever holds the call (a
 * mailbox, the remote router, the server side of a request) settles it through these methods,
 * and only the first settlement counts.
 *
 * @module
 */

import type { Envelope, StreamSink } from "../actor/envelope.ts";
import type { StreamChannel } from "../actor/stream.ts";
import type { Caller, MessageKind } from "../actor/ref.ts";
import type { TimerWheel, WheelEntry } from "../util/async.ts";

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
  /**
   * Encoded size of the payload in bytes, when it is known (it came over the mesh); a local
   * call's size is bounded where it is delivered.
   */
  readonly size?: number;
  /** Deadline on the node clock's monotonic time (`clock.monotonic()`). */
  readonly deadline: number;
  /** Turn ids of the call chain that sent it (deadlock detection). */
  readonly chain: readonly string[];
  /** Sender's raw token (verified only by the node that runs the handler). */
  readonly token?: string;
  /** Idempotency key as the caller gave it (scoped by the verified caller where it runs). */
  readonly idempotencyKey?: string;
  /** For streams: where the items go. */
  readonly sink?: StreamSink;
  /**
   * The caller's input stream, when the payload is one: a bounded channel the handler reads
   * (it is then also the payload on the node that runs the handler).
   */
  readonly input?: StreamChannel;
  /** W3C trace context of the sender (`traceparent`, then a space and `tracestate`). */
  readonly trace?: string;
  /** Arrived over the mesh (its caller is on another node, or is a raw mesh client). */
  readonly remote?: boolean;
  /**
   * The actor (`type/id`) whose turn sent it, on this node: trusted because nothing outside
   * this process sets it (it never crosses the mesh; a reminder proves it with a cluster token).
   */
  readonly from?: string;
  /** `type/id`, when the caller has it already (an `ActorRef` keeps its own). */
  readonly key?: string;
}

/** How a call's outcomes reach its caller. Each is called at most once, and only one of them. */
export interface Settlement {
  /**
   * The handler's result (an ask's reply; for a stream: the stream ended). `fromWire`: the
   * value was decoded from a reply whose size the mesh already bounded.
   */
  resolve(value: unknown, fromWire?: boolean): void;
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
   * remote caller (it moves the request when the node is declared dead). The default is
   * `reject(err)`.
   */
  drop?(err: unknown): void;
  /**
   * Nothing ran: another live node owns the actor. A remote caller is told to send it there
   * (settling the call); without this hook the holder hands the call on itself.
   */
  redirect?(node: string, revision: number): void;
}

/** Where a call stands. */
export type CallState = "pending" | "accepted" | "settled";

const NO_CALLER = Symbol("no caller");

/**
 * One message and its settle-once outcome.
 *
 * @example
 * ```ts
 * import { Call } from "./call.ts";
 * import { systemClock } from "../util/clock.ts";
 * const call = new Call(
 *   { kind: "ask", type: "counter", id: "c1", handler: "inc", payload: 1,
 *     deadline: systemClock.monotonic() + 1000, chain: [] },
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
  readonly size: number | undefined;
  readonly deadline: number;
  readonly chain: readonly string[];
  readonly token?: string;
  readonly sink?: StreamSink;
  readonly input?: StreamChannel;
  readonly trace?: string;
  readonly remote: boolean;
  /** The idempotency key as the caller gave it. */
  readonly rawIdempotencyKey: string | undefined;
  #caller: Caller | undefined | typeof NO_CALLER = NO_CALLER;
  #from: string | undefined;
  #scopedKey: string | undefined;
  #key: string | undefined;
  readonly #on: Settlement;
  #state: CallState = "pending";
  #failure: unknown;
  #finally: (() => void)[] | undefined;
  /** The deadline's timer, once armed (see {@link expireOn}). */
  #wheel: TimerWheel | undefined;
  #entry: WheelEntry | undefined;
  #timeout: ((call: Call) => Error) | undefined;

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
    this.rawIdempotencyKey = init.idempotencyKey;
    if (init.sink !== undefined) this.sink = init.sink;
    if (init.input !== undefined) this.input = init.input;
    if (init.trace !== undefined) this.trace = init.trace;
    this.remote = init.remote === true;
    this.#from = init.from;
    this.#key = init.key;
    this.#on = on;
  }

  /** The sender's identity, once the node running the handler verified its token. */
  get caller(): Caller | undefined {
    const c = this.#caller;
    return c === NO_CALLER ? undefined : c;
  }

  /** Whether the node running the handler has admitted it (and recorded its caller). */
  get admitted(): boolean {
    return this.#caller !== NO_CALLER;
  }

  /** The actor that sent it, when that is proven (see {@link CallInit.from}, {@link admit}). */
  get from(): string | undefined {
    return this.#from;
  }

  /**
   * Records the identity verified for this call's token on the node that runs the handler
   * (`undefined`: an anonymous call), and the actor it comes from when its token proves it (a
   * reminder). Only the first record counts: a call handed on again (from a stopping
   * activation) keeps its caller.
   */
  admit(caller: Caller | undefined, from?: string): void {
    if (this.#caller !== NO_CALLER) return;
    this.#caller = caller;
    if (from !== undefined) this.#from = from;
  }

  /**
   * The idempotency key scoped by the verified caller, so that one caller never sees another's
   * reply: `a:<key>` for anonymous callers (a namespace of their own), `u:<length of sub>:<sub>:<key>`
   * for a signed-in caller.
   */
  get idempotencyKey(): string | undefined {
    const raw = this.rawIdempotencyKey;
    if (raw === undefined) return undefined;
    if (this.#scopedKey !== undefined) return this.#scopedKey;
    const c = this.caller;
    const scoped = c === undefined ? `a:${raw}` : `u:${c.sub.length}:${c.sub}:${raw}`;
    if (this.admitted) this.#scopedKey = scoped;
    return scoped;
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

  /** Settles with the handler's result (`fromWire`: see {@link Settlement.resolve}). */
  resolve(value: unknown, fromWire?: boolean): void {
    if (this.#settle()) this.#on.resolve(value, fromWire);
    this.#ended();
  }

  /** Settles with an error. */
  reject(err: unknown): void {
    if (this.#settle(err)) this.#on.reject(err);
    this.#ended();
  }

  /** Settles as "not processed, send it elsewhere" (see {@link Settlement.retry}). */
  retry(err: unknown): void {
    if (this.#settle(err)) {
      if (this.#on.retry) this.#on.retry(err);
      else this.#on.reject(err);
    }
    this.#ended();
  }

  /** Settles as "dropped by a fenced node" (see {@link Settlement.drop}). */
  drop(err: unknown): void {
    if (this.#settle(err)) {
      if (this.#on.drop) this.#on.drop(err);
      else this.#on.reject(err);
    }
    this.#ended();
  }

  /**
   * Tells a waiting remote caller that `node` owns the actor (settling the call), and returns
   * true; returns false when the holder must hand the call on itself: a local caller, or one
   * whose request is already answered (a tell once accepted, a stream once its credit inbox
   * went back). An ask waits for its reply whether or not a mailbox took it.
   */
  redirect(node: string, revision: number): boolean {
    if (this.kind !== "ask" || this.#state === "settled" || !this.#on.redirect) return false;
    this.#settle();
    this.#on.redirect(node, revision);
    this.#ended();
    return true;
  }

  /**
   * Rejects the call with `timeout()` when its deadline passes, unless it settled before: its
   * one deadline timer, armed where nothing else bounds the wait (local delivery; a remote
   * attempt is bounded by its request). Idempotent.
   */
  expireOn(wheel: TimerWheel, timeout: (call: Call) => Error): void {
    if (this.#state === "settled" || this.#wheel) return;
    this.#wheel = wheel;
    this.#timeout = timeout;
    this.#entry = wheel.add(this.deadline, Call.#expire, this);
  }

  /** A deadline's timer fired (one function for every call: no closure per call). */
  static #expire = (call: Call): void => call.reject(call.#timeout!(call));

  /** Runs `fn` once the call is settled (at once if it is). */
  finally(fn: () => void): void {
    if (this.#state === "settled") return fn();
    (this.#finally ??= []).push(fn);
  }

  #settle(failure?: unknown): boolean {
    if (this.#state === "settled") return false;
    this.#state = "settled";
    this.#failure = failure;
    if (this.#wheel) this.#wheel.remove(this.#entry!);
    return true;
  }

  #ended(): void {
    const fns = this.#finally;
    this.#finally = undefined;
    if (fns) { for (const fn of fns) fn(); }
  }
}
