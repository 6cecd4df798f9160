/**
 * The context (`ctx`) a handler gets.
 *
 * @module
 */

import type { ActorDefinition, ActorTypes, AnyActorTypes } from "./define.ts";
import type { ActorRef, Caller } from "./ref.ts";
import type { ConfigView } from "../config/types.ts";

/**
 * What a handler sees and can do. `state` reflects every event emitted so far in this turn.
 *
 * @example
 * ```ts
 * import { defineActor } from "@troupe/troupe";
 * const Greeter = defineActor({
 *   name: "greeter",
 *   initialState: () => ({ greeted: 0 }),
 *   events: { greeted: (s, _e: { who: string }) => ({ greeted: s.greeted + 1 }) },
 *   handlers: {
 *     greet(ctx, who: string) {
 *       ctx.emit("greeted", { who });
 *       ctx.schedule(60_000, "remind", who); // durable reminder
 *       return `hello ${who} (#${ctx.state.greeted}, seq ${ctx.seq})`;
 *     },
 *     remind(_ctx, _who: string) {},
 *   },
 * });
 * ```
 */
export interface Context<S, E> {
  /** The actor id. */
  readonly id: string;
  /** The actor type. */
  readonly type: string;
  /** The id of the node running this turn. */
  readonly node: string;
  /** The current state (assignable for actors without events). */
  state: S;
  /** Sequence number of the last applied event. */
  readonly seq: number;
  /** Applies an event to the state now; it is persisted before the reply is sent. */
  emit<K extends keyof E & string>(type: K, payload: E[K]): void;
  /** A ref to this actor (messages to it queue behind the current turn). */
  readonly self: ActorRef<AnyActorTypes>;
  /** A ref to another actor; asks through it inherit this turn's deadline. */
  ref<T extends ActorTypes>(def: ActorDefinition<T>, id?: string): ActorRef<T>;
  /** Publishes to a topic once this turn's events are durable. */
  publish(topic: string, payload: unknown): void;
  /** The verified identity of the sender, when auth is on. */
  readonly caller: Caller | undefined;
  /** Aborted when the caller's deadline passes. */
  readonly signal: AbortSignal;
  /**
   * Schedules a durable reminder: `handler(payload)` is sent to this actor after `delayMs`,
   * also after a restart or failover. Stored with this turn's events.
   */
  schedule(delayMs: number, handler: string, payload?: unknown): void;
  /**
   * The node's config as it was when this turn started: a change (even a `set()` by this
   * handler) shows from the next turn on.
   */
  readonly config: ConfigView;
}
