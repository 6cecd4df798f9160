/**
 * Actor references: typed handles to send messages to an actor by name.
 *
 * @module
 */

import type { ActorTypes, AnyActorTypes } from "./types.ts";

export type { Caller } from "../auth/access.ts";

/** Options of `ref.ask()`. */
export interface AskOptions {
  /** Milliseconds to wait for the reply (capped by the caller's own deadline). @default {30000} */
  timeout?: number;
  /**
   * A key that makes retries safe: a message with a key the actor has already handled gets
   * the first reply again and applies nothing twice.
   */
  idempotencyKey?: string;
  /** Gives up waiting (the message may still be handled). */
  signal?: AbortSignal;
  /**
   * The caller's token (a JWT), verified by the node that runs the handler. @default {the
   * ref's token; inside a handler, the token of the message being handled}
   */
  token?: string;
}

/** Options of `system.ref()`. */
export interface RefOptions {
  /** The token every call through this ref carries (a call's own `token` wins). */
  token?: string;
}

/** Options of `ref.tell()`. */
export type TellOptions = AskOptions;

/** Options of `ref.stream()`. */
export interface StreamOptions extends AskOptions {
  /** Items sent ahead of the consumer before the producer waits. @default {16} */
  window?: number;
}

/** A stream of items from a streaming handler; `return()`/`break` cancels it. */
export interface ActorStream<T> extends AsyncIterable<T> {
  /** Cancels the stream; the handler's generator is closed. */
  cancel(): Promise<void>;
}

/** Handler names of `T`. */
export type HandlerKeys<T extends ActorTypes> = keyof T["payloads"] & keyof T["results"] & string;

/** Handler names of `T` callable with `ask`/`tell` (not streaming). */
export type AskKeys<T extends ActorTypes> = {
  [K in HandlerKeys<T>]: [T["results"][K]] extends [never] ? K
    : T["results"][K] extends AsyncIterable<unknown> | Iterator<unknown> ? never
    : K;
}[HandlerKeys<T>];

/** Handler names of `T` callable with `stream`. */
export type StreamKeys<T extends ActorTypes> = {
  [K in HandlerKeys<T>]: [T["results"][K]] extends [never] ? never
    : T["results"][K] extends AsyncIterable<unknown> | Iterator<unknown> ? K
    : never;
}[HandlerKeys<T>];

/**
 * What a caller passes for a payload of type `P`: `P` itself, or for a handler that reads a
 * stream (`AsyncIterable<T>`), any `AsyncIterable<T>` or `Iterable<T>`.
 */
export type PayloadArg<P> = P extends AsyncIterable<infer T> ? AsyncIterable<T> | Iterable<T> : P;

/** The payload argument (optional where the handler takes none) and the options. */
export type Args<P, O> = unknown extends P ? [payload?: P, options?: O]
  : [payload: PayloadArg<P>, options?: O];

/** The reply type of handler `K`. */
export type ReplyOf<T extends ActorTypes, K extends keyof T["results"]> = Awaited<T["results"][K]>;

/** The item type of streaming handler `K`. */
export type ItemOf<T extends ActorTypes, K extends keyof T["results"]> = T["results"][K] extends
  AsyncIterable<infer Y> ? Y
  : T["results"][K] extends Iterator<infer Y> ? Y
  : never;

/** The payload type of handler `K`. */
export type PayloadOf<T extends ActorTypes, K extends keyof T["payloads"]> = T["payloads"][K];

/**
 * A typed handle to one actor (or, for stateless workers, to the worker type).
 *
 * @example
 * ```ts
 * import { createSystem, defineActor } from "@troupe/troupe";
 * const Counter = defineActor({
 *   name: "counter",
 *   initialState: () => 0,
 *   handlers: { inc: (ctx, n: number) => (ctx.state += n) },
 * });
 * const system = await createSystem({ actors: [Counter], journal: ":memory:" });
 * const ref = system.ref(Counter, "c1");
 * await ref.ask("inc", 2); // 2
 * await system.close();
 * ```
 */
export interface ActorRef<T extends ActorTypes = AnyActorTypes> {
  /** The actor type. */
  readonly type: string;
  /** The actor id ("" for a stateless worker ref without a routing hint). */
  readonly id: string;
  /** Sends a message and waits for the handler's reply. */
  ask<K extends AskKeys<T>>(
    handler: K,
    ...args: Args<T["payloads"][K], AskOptions>
  ): Promise<ReplyOf<T, K>>;
  /** Sends a message; resolves once it was accepted by the actor's mailbox. */
  tell<K extends AskKeys<T>>(
    handler: K,
    ...args: Args<T["payloads"][K], TellOptions>
  ): Promise<void>;
  /** Calls a streaming handler; items arrive with backpressure. */
  stream<K extends StreamKeys<T>>(
    handler: K,
    ...args: Args<T["payloads"][K], StreamOptions>
  ): ActorStream<ItemOf<T, K>>;
}

/** Where a call comes from: the deadline, call chain and identity it inherits. */
export interface CallOrigin {
  /** Absolute deadline on the node clock's monotonic time. */
  readonly deadline: number;
  /** Turn ids of the call chain (for deadlock detection). */
  readonly chain: readonly string[];
  /** The sender's raw token, forwarded on nested calls (verified again where they run). */
  readonly token?: string;
  /** The actor (`type/id`) whose turn sends it (the access entry `"self"`; never on the wire). */
  readonly from?: string;
}

/** The kind of a message. */
export type { MessageKind } from "../mesh/wire.ts";

/** What the runtime needs to send a message; implemented by the system. */
export interface Dispatcher {
  /** Sends one message; for `tell` resolves on acceptance, for `ask` with the reply. */
  send(
    type: string,
    id: string,
    kind: "ask" | "tell",
    handler: string,
    payload: unknown,
    options: AskOptions | undefined,
    origin: CallOrigin | undefined,
    key?: string,
  ): Promise<unknown>;
  /** Opens a stream. */
  stream(
    type: string,
    id: string,
    handler: string,
    payload: unknown,
    options: StreamOptions | undefined,
    origin: CallOrigin | undefined,
  ): ActorStream<unknown>;
}

/** The implementation of {@link ActorRef}. */
export class ActorRefImpl implements ActorRef<AnyActorTypes> {
  /** The actor type. */
  readonly type: string;
  /** The actor id. */
  readonly id: string;
  readonly #dispatcher: Dispatcher;
  readonly #origin: CallOrigin | undefined;
  readonly #token: string | undefined;

  /** Makes a ref; `origin` is the calling turn, for nested calls. */
  constructor(
    dispatcher: Dispatcher,
    type: string,
    id: string,
    origin?: CallOrigin,
    options?: RefOptions,
  ) {
    this.#dispatcher = dispatcher;
    this.type = type;
    this.id = id;
    this.#origin = origin;
    this.#token = options?.token;
  }

  /** `type/id`, made once per ref (a string whose hash the maps it is looked up in keep). */
  #key: string | undefined;

  /** The call's options with the ref's token, unless the call brings its own. */
  #with<O extends AskOptions>(options: O | undefined): O | undefined {
    if (this.#token === undefined || options?.token !== undefined) return options;
    return { ...options, token: this.#token } as O;
  }

  /** See {@link ActorRef.ask}. */
  ask(handler: string, payload?: unknown, options?: AskOptions): Promise<never> {
    return this.#dispatcher.send(
      this.type,
      this.id,
      "ask",
      handler,
      payload,
      this.#with(options),
      this.#origin,
      this.#key ??= `${this.type}/${this.id}`,
    ) as Promise<never>;
  }

  /** See {@link ActorRef.tell}. */
  tell(handler: string, payload?: unknown, options?: TellOptions): Promise<void> {
    return this.#dispatcher.send(
      this.type,
      this.id,
      "tell",
      handler,
      payload,
      this.#with(options),
      this.#origin,
      this.#key ??= `${this.type}/${this.id}`,
    ) as Promise<void>;
  }

  /** See {@link ActorRef.stream}. */
  stream(handler: string, payload?: unknown, options?: StreamOptions): ActorStream<never> {
    return this.#dispatcher.stream(
      this.type,
      this.id,
      handler,
      payload,
      this.#with(options),
      this.#origin,
    ) as ActorStream<never>;
  }
}

/**
 * What {@link makeRef} reads of a definition: its name, and its types (an `ActorDefinition`
 * has both; the phantom field is never set).
 */
export interface Addressed<T extends ActorTypes> {
  /** The actor type name. */
  readonly name: string;
  /** Phantom field carrying the types. */
  readonly __types?: T;
}

/** Makes a typed ref for a definition. */
export function makeRef<T extends ActorTypes>(
  dispatcher: Dispatcher,
  def: Addressed<T>,
  id: string,
  origin?: CallOrigin,
  options?: RefOptions,
): ActorRef<T> {
  return new ActorRefImpl(dispatcher, def.name, id, origin, options) as unknown as ActorRef<T>;
}
