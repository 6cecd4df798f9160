/**
 * `defineActor`: an actor type as a plain, validated value whose types are inferred from one
 * object literal (state → events → handlers).
 *
 * @module
 */

import type { ActorTypes, AnyActorTypes, AnyFn } from "./types.ts";
import type { ActorRef, Caller } from "./ref.ts";
import type { ConfigView } from "../config/types.ts";
import { type AccessMap, validateAccess } from "../auth/access.ts";
import {
  checkedItems,
  checkedReply,
  checkedYields,
  type HandlerSchemas,
  isSchema,
  isStreamSchema,
  type StandardSchemaV1,
} from "./schema.ts";

export type { ActorTypes, AnyActorTypes, AnyFn } from "./types.ts";

/**
 * Upcasters of one event type: `upcasters[v]` turns a payload written with version `v` into
 * version `v + 1`. The event's current version is one more than the highest key.
 */
export type Upcasters = Record<number, (payload: unknown) => unknown>;

/** Options of `ctx.publish`. */
export interface ContextPublishOptions {
  /**
   * Stored with the turn's events and forwarded to the durable topic after the commit: the
   * message is published if and only if the turn commits, at least once. @default {false}
   */
  durable?: boolean;
}

/** Options of `ctx.schedule`. */
export interface ScheduleOptions {
  /** A name among this actor's reminders: scheduling it again replaces it; `ctx.cancel(name)` drops it. */
  name?: string;
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
   * ms, a `Date`, or a cron expression (`"0 9 * * 1"`: Mondays at 9:00; five or six fields,
   * UTC) that repeats — also after a restart or failover. Stored with this turn's events. A
   * `name` replaces an earlier reminder of that name of this actor. A repeating reminder whose
   * runs were missed while the cluster was down runs once, then at its next time (not once per
   * missed run). It runs with this turn's caller, never with more rights.
   */
  schedule(
    when: number | Date | string,
    handler: string,
    payload?: unknown,
    options?: ScheduleOptions,
  ): void;
  /** Cancels this actor's reminder named `name`, with this turn's commit; unknown names are ignored. */
  cancel(name: string): void;
  /**
   * The node's config as it was when this turn started: a change (even a `set()` by this
   * handler) shows from the next turn on.
   */
  readonly config: ConfigView;
}

/** A hook run inside the actor's turn (it may emit events). */
export type Hook<S, E> = (ctx: Context<S, E>) => void | Promise<void>;

/** The options shared by every definition. */
export interface DefinitionOptions<S, E> {
  /** Actor type name: `/^[a-z][a-z0-9_-]*$/`. */
  name: string;
  /** Events between snapshots. @default {100} */
  snapshotEvery?: number;
  /** Version of the snapshot format; snapshots of another version are ignored. @default {1} */
  snapshotVersion?: number;
  /** Milliseconds without messages before the activation is passivated. @default {60000} */
  idleAfter?: number;
  /** Mailbox capacity; a full mailbox rejects with `overloaded`. @default {1000} */
  mailboxSize?: number;
  /**
   * Upcasters per event type for events stored with an older version (see {@link Upcasters}).
   *
   * @example
   * ```ts
   * // v1 stored { cents }, v2 (current) is { amount }
   * const upcasters = { deposited: { 1: (p: any) => ({ amount: p.cents / 100 }) } };
   * ```
   */
  upcasters?: Record<string, Upcasters>;
  /** Runs after the state was recovered, before the first message. */
  onActivate?: Hook<S, E>;
  /** Runs before the activation is dropped (idle, or system close). */
  onPassivate?: Hook<S, E>;
  /** `true` for a stateless worker type: no state or events, many instances. @default {false} */
  stateless?: boolean;
  /** Most concurrent messages per node for a stateless worker type. @default {64} */
  concurrency?: number;
}

/**
 * A handler with a payload schema: `input` (a Standard Schema of Zod, Valibot, ArkType …, or
 * `streamOf(schema)` for an input stream) is checked by the node that runs the handler before
 * `handle` runs, and a payload that fails is refused with `bad_payload` (its `data.issues`
 * lists `{ path, message }`). `output`, if given, checks the reply (each item, for a streaming
 * handler) inside the turn: a reply that fails it fails the turn as a bug would (`internal`).
 * The payload type is the schema's input type.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { defineActor } from "@troupe/troupe";
 *
 * export const Account = defineActor({
 *   name: "account",
 *   initialState: () => ({ balance: 0 }),
 *   events: { deposited: (s, e: { amount: number }) => ({ balance: s.balance + e.amount }) },
 *   handlers: {
 *     deposit: {
 *       input: z.number().positive(),
 *       output: z.number(),
 *       handle(ctx, amount) { // amount: number
 *         ctx.emit("deposited", { amount });
 *         return ctx.state.balance;
 *       },
 *     },
 *   },
 * });
 * ```
 */
export interface SchemaHandler<C, P> {
  /** The payload's schema. */
  input: StandardSchemaV1<P, unknown>;
  /** The reply's schema (each item's, for a streaming handler). */
  output?: StandardSchemaV1;
  /**
   * The handler, given the payload once it passed `input`. (A property, not a method: its
   * payload parameter must accept what the schema accepts.)
   */
  handle: (ctx: C, payload: P) => unknown;
}

/**
 * A handler function, `(ctx, payload) => reply`. Its parameters are checked bivariantly (like
 * a method's), so that a handler's own payload annotation decides the payload type.
 */
export type HandlerFn<C, P> = { handler(ctx: C, payload: P): unknown }["handler"];

/** The payload types of a `handlers` literal: a schema's input type, or the second parameter. */
export type HandlerPayloads<H> = {
  [K in keyof H]: H[K] extends { input: StandardSchemaV1<infer I, unknown> } ? I
    : H[K] extends (ctx: never, payload: infer P) => unknown ? P
    : never;
};

/** The result types of a `handlers` literal: what each function (or `handle`) returns. */
export type HandlerResults<H> = {
  [K in keyof H]: H[K] extends { handle(...args: never): infer R } ? R
    : H[K] extends (...args: never) => infer R ? R
    : never;
};

/**
 * The object literal given to {@link defineActor}. `P` carries the payload types into the
 * handlers (a schema's input type into `handle`), `H` is the literal's own type, from which
 * the definition's payload and result types are read.
 */
export type ActorSpec<S, E, P, H> =
  & DefinitionOptions<S, E>
  & {
    /** The state of a fresh actor. */
    initialState?: () => S;
    /** Pure reducers, one per event type: `(state, payload) => newState`. */
    events?: { [K in keyof E]: (state: S, payload: E[K]) => S };
    /**
     * Message handlers, one message at a time per actor: a function `(ctx, payload) => reply`,
     * or `{ input, output?, handle }` with payload schemas (see {@link SchemaHandler}).
     */
    handlers:
      & {
        [K in keyof P]: HandlerFn<Context<S, E>, P[K]> | SchemaHandler<Context<S, E>, P[K]>;
      }
      & H;
    /**
     * Who may call each handler, when the hosting node has `auth` (see {@link AccessMap});
     * `"*"` covers the handlers not listed, and a handler covered by neither is denied. A node
     * without `auth` refuses to host a type that declares `access`. Keys are checked when the
     * type is defined (a name that is not a handler throws), not by the compiler: typing them
     * from the handlers would stop the handlers' types from being inferred.
     */
    access?: AccessMap;
  };

/**
 * An actor type: the value returned by {@link defineActor}. Pass it to `createSystem({ actors })`
 * to host it, and to `system.ref()` to address its actors.
 */
export interface ActorDefinition<T extends ActorTypes = AnyActorTypes> {
  /** The actor type name. */
  readonly name: string;
  /** Whether it is a stateless worker type. */
  readonly stateless: boolean;
  /** Whether it is event-sourced (has `events`). */
  readonly eventSourced: boolean;
  /** Events between snapshots. */
  readonly snapshotEvery: number;
  /** Snapshot format version. */
  readonly snapshotVersion: number;
  /** Idle time before passivation, ms. */
  readonly idleAfter: number;
  /** Mailbox capacity. */
  readonly mailboxSize: number;
  /** Most concurrent messages per node for stateless workers. */
  readonly concurrency: number;
  /** Current version per event type. */
  readonly eventVersions: Readonly<Record<string, number>>;
  /** Upcasters per event type. */
  readonly upcasters: Readonly<Record<string, Upcasters>>;
  /** The initial state. */
  readonly initialState: () => T["state"];
  /** The reducers. */
  readonly events: Readonly<Record<string, (state: T["state"], payload: unknown) => T["state"]>>;
  /** The handlers, as functions `(ctx, payload) => reply` (schema handlers wrapped). */
  readonly handlers: Readonly<Record<string, AnyFn>>;
  /** The payload and reply schemas of the handlers that declare them. */
  readonly schemas: Readonly<Record<string, HandlerSchemas>>;
  /** Handlers that are async generator functions (streaming). */
  readonly streaming: ReadonlySet<string>;
  /** Activation hook. */
  readonly onActivate?: Hook<T["state"], T["events"]>;
  /** Passivation hook. */
  readonly onPassivate?: Hook<T["state"], T["events"]>;
  /** Access rules per handler (see `access` in {@link defineActor}). */
  readonly access?: AccessMap;
  /** Phantom field carrying the types; never set at run time. */
  readonly __types?: T;
}

/** The state type of a definition. */
export type StateOf<D> = D extends ActorDefinition<infer T> ? T["state"] : never;
/** The event payload types of a definition. */
export type EventsOf<D> = D extends ActorDefinition<infer T> ? T["events"] : never;

const NAME = /^[a-z][a-z0-9_-]*$/;
const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;
const GeneratorFunction = Object.getPrototypeOf(function* () {}).constructor;

function positiveInt(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`Option "${what}" must be a positive integer, got ${value}`);
  }
  return value;
}

/** The `handle` of a `{ input, output?, handle }` handler, after checking its shape. */
function schemaHandler(
  where: string,
  entry: unknown,
  schemas: Record<string, HandlerSchemas>,
  key: string,
): unknown {
  const what = `Handler "${where}"`;
  if (typeof entry !== "object" || entry === null) {
    throw new TypeError(`${what} is not a function or { input, handle }`);
  }
  const { input, output, handle } = entry as Partial<SchemaHandler<unknown, unknown>>;
  if (typeof handle !== "function") throw new TypeError(`${what} has no handle() function`);
  if (!isSchema(input)) {
    throw new TypeError(`${what}: input is not a Standard Schema (Zod, Valibot, ArkType …)`);
  }
  if (output !== undefined && !isSchema(output)) {
    throw new TypeError(`${what}: output is not a Standard Schema (Zod, Valibot, ArkType …)`);
  }
  schemas[key] = Object.freeze({ input, ...(output !== undefined ? { output } : {}) });
  return handle;
}

/**
 * A schema handler as a plain handler: the payload was checked on the message path; here the
 * items of an input stream are checked as they are read, and the reply against `output`.
 */
function wrap(where: string, handle: AnyFn, schemas: HandlerSchemas): AnyFn {
  const { input, output } = schemas;
  const items = isStreamSchema(input) ? input.items : undefined;
  const streams = handle instanceof AsyncGeneratorFunction || handle instanceof GeneratorFunction;
  if (items === undefined && output === undefined) return handle;
  return function checked(ctx: unknown, payload: unknown) {
    const arg = items !== undefined && payload !== null && typeof payload === "object" &&
        Symbol.asyncIterator in payload
      ? checkedItems(payload as AsyncIterable<unknown>, items, where)
      : payload;
    const reply = handle(ctx, arg);
    if (output === undefined) return reply;
    return streams ? checkedYields(reply, output, where) : checkedReply(reply, output, where);
  };
}

/**
 * Defines an actor type. Types flow from the literal: `ref.ask("deposit", 5)` is checked
 * against the handler's payload type and resolves to its return type.
 *
 * @example
 * ```ts
 * import { ActorError, defineActor } from "@troupe/troupe";
 *
 * export const Account = defineActor({
 *   name: "account",
 *   initialState: () => ({ balance: 0 }),
 *   events: {
 *     deposited: (s, e: { amount: number }) => ({ balance: s.balance + e.amount }),
 *     withdrawn: (s, e: { amount: number }) => ({ balance: s.balance - e.amount }),
 *   },
 *   handlers: {
 *     deposit(ctx, amount: number) {
 *       ctx.emit("deposited", { amount });
 *       return ctx.state.balance;
 *     },
 *     withdraw(ctx, amount: number) {
 *       if (amount > ctx.state.balance) {
 *         throw new ActorError("insufficient funds", { code: "insufficient" });
 *       }
 *       ctx.emit("withdrawn", { amount });
 *       return ctx.state.balance;
 *     },
 *     balance: (ctx) => ctx.state.balance,
 *   },
 * });
 * ```
 */
export function defineActor<
  S = undefined,
  E extends object = Record<never, never>,
  P extends object = Record<never, never>,
  H extends object = Record<never, never>,
>(
  spec: ActorSpec<S, E, P, H>,
): ActorDefinition<
  { state: S; events: E; payloads: HandlerPayloads<H>; results: HandlerResults<H> }
> {
  if (typeof spec !== "object" || spec === null) {
    throw new TypeError("defineActor() expects an object");
  }
  if (typeof spec.name !== "string" || !NAME.test(spec.name)) {
    throw new TypeError(`Actor type name must match /^[a-z][a-z0-9_-]*$/, got "${spec.name}"`);
  }
  const handlers = spec.handlers as Record<string, unknown>;
  if (typeof handlers !== "object" || handlers === null) {
    throw new TypeError(`Actor type "${spec.name}" needs a "handlers" object`);
  }
  const streaming = new Set<string>();
  const fns: Record<string, AnyFn> = {};
  const schemas: Record<string, HandlerSchemas> = Object.create(null);
  for (const [key, entry] of Object.entries(handlers)) {
    const where = `${spec.name}.${key}`;
    const fn = typeof entry === "function" ? entry : schemaHandler(where, entry, schemas, key);
    if (fn instanceof AsyncGeneratorFunction || fn instanceof GeneratorFunction) {
      streaming.add(key);
    }
    fns[key] = schemas[key] ? wrap(where, fn as AnyFn, schemas[key]) : fn as AnyFn;
  }
  const events = (spec.events ?? {}) as Record<string, (s: S, p: unknown) => S>;
  for (const [key, fn] of Object.entries(events)) {
    if (typeof fn !== "function") {
      throw new TypeError(`Event "${key}" of actor type "${spec.name}" is not a reducer function`);
    }
  }
  const stateless = spec.stateless === true;
  if (stateless && spec.events) {
    throw new TypeError(`Stateless actor type "${spec.name}" cannot have events`);
  }
  const upcasters: Record<string, Upcasters> = {};
  const eventVersions: Record<string, number> = {};
  for (const key of Object.keys(events)) eventVersions[key] = 1;
  for (const [key, chain] of Object.entries(spec.upcasters ?? {})) {
    if (!(key in events)) {
      throw new TypeError(`Upcasters of actor type "${spec.name}" name unknown event "${key}"`);
    }
    const versions = Object.keys(chain).map(Number).sort((a, b) => a - b);
    versions.forEach((v, i) => {
      if (v !== i + 1 || typeof chain[v] !== "function") {
        throw new TypeError(
          `Upcasters of event "${key}" of "${spec.name}" must be functions keyed 1, 2, … without gaps`,
        );
      }
    });
    upcasters[key] = chain;
    eventVersions[key] = versions.length + 1;
  }
  if (spec.access !== undefined) validateAccess(spec.name, spec.access, Object.keys(handlers));
  const initialState = spec.initialState ?? (() => undefined as S);
  const def = {
    name: spec.name,
    stateless,
    eventSourced: spec.events !== undefined,
    snapshotEvery: positiveInt(spec.snapshotEvery, 100, "snapshotEvery"),
    snapshotVersion: positiveInt(spec.snapshotVersion, 1, "snapshotVersion"),
    idleAfter: positiveInt(spec.idleAfter, 60_000, "idleAfter"),
    mailboxSize: positiveInt(spec.mailboxSize, 1000, "mailboxSize"),
    concurrency: positiveInt(spec.concurrency, 64, "concurrency"),
    eventVersions,
    upcasters,
    initialState,
    events,
    handlers: Object.freeze(fns),
    schemas: Object.freeze(schemas),
    streaming,
    ...(spec.onActivate ? { onActivate: spec.onActivate } : {}),
    ...(spec.onPassivate ? { onPassivate: spec.onPassivate } : {}),
    ...(spec.access ? { access: Object.freeze({ ...spec.access }) as AccessMap } : {}),
  };
  return Object.freeze(def) as unknown as ActorDefinition<
    { state: S; events: E; payloads: HandlerPayloads<H>; results: HandlerResults<H> }
  >;
}
