/**
 * The context (`ctx`) a handler gets.
 *
 * @module
 */

import type { ActorDefinition, ActorTypes, AnyActorTypes } from "./define.ts";
import type { ActorRef, Caller } from "./ref.ts";
import type { ConfigView } from "../config/types.ts";

/** Options of `ctx.publish`. */
export interface ContextPublishOptions {
  /**
   * Stored with the turn's events and forwarded to the durable topic after the commit: the
   * message is published if and only if the turn commits, at least once. @default {false}
   */
  durable?: boolean;
}

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
  /**
   * Publishes to a topic once this turn's events are durable. With `durable: true` the message
   * is stored with the turn's events in the same commit (a transactional outbox) and forwarded
   * to the durable topic afterwards: published if and only if the turn commits, at least once.
   */
  publish(topic: string, payload: unknown, options?: ContextPublishOptions): void;
  /** The verified identity of the sender, when auth is on. */
  readonly caller: Caller | undefined;
  /** Aborted when the caller's deadline passes. */
  readonly signal: AbortSignal;
  /**
   * Schedules a durable reminder: `handler(payload)` is sent to this actor `when` — a delay in
   * ms, a `Date`, or a cron expression (`"0 9 * * 1"`: Mondays at 9:00; five or six fields, UTC) that repeats —
   * also after a restart or failover. Stored with this turn's events. A `name` replaces an
   * earlier reminder of that name of this actor. A repeating reminder whose runs were missed
   * while the cluster was down runs once, then at its next time (not once per missed run). It
   * runs with this turn's caller, never with more rights.
   */
  schedule(when: number | Date | string, handler: string, payload?: unknown, options?: {
    /** A name of this actor's reminders: scheduling it again replaces it; `cancel(name)` drops it. */
    name?: string;
  }): void;
  /** Cancels this actor's reminder named `name` (with this turn's commit). Unknown names are ignored. */
  cancel(name: string): void;
  /**
   * The node's config as it was when this turn started: a change (even a `set()` by this
   * handler) shows from the next turn on.
   */
  readonly config: ConfigView;
}
