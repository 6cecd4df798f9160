/**
 * The type record of an actor definition ({@link ActorTypes}): the bottom of `src/actor/`, so
 * that definitions, contexts and refs share it without importing each other.
 *
 * @module
 */

/** The types of an actor definition, carried as one record type parameter. */
export interface ActorTypes {
  /** The state. */
  state: unknown;
  /** Event payloads by event type. */
  events: object;
  /** Handler payloads by handler name (`unknown` where the handler takes none). */
  payloads: object;
  /** Handler results by handler name (an `AsyncIterable` for streaming handlers). */
  results: object;
}

/** Any actor's types (used where the exact types do not matter). */
export interface AnyActorTypes extends ActorTypes {
  /** Any state. */
  // deno-lint-ignore no-explicit-any
  state: any;
  /** Any events. */
  // deno-lint-ignore no-explicit-any
  events: Record<string, any>;
  /** Any payloads. */
  // deno-lint-ignore no-explicit-any
  payloads: Record<string, any>;
  /** Any results. */
  // deno-lint-ignore no-explicit-any
  results: Record<string, any>;
}

/** A handler function of any shape. */
// deno-lint-ignore no-explicit-any
export type AnyFn = (...args: any[]) => any;
