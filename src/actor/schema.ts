/**
 * Payload schemas: the Standard Schema interface (https://standardschema.dev, v1, copied here
 * so that Troupe depends on the spec and not on one library: Zod, Valibot and ArkType all
 * implement it), and the check the node that runs a handler makes before the handler runs.
 *
 * @module
 */

import { BadPayloadError, InternalError, TimeoutError } from "../errors.ts";
import type { Clock, TimerId } from "../util/clock.ts";

// ---- the Standard Schema v1 interface (as the spec writes it, without its namespace) ----

/**
 * A schema of any library that implements Standard Schema v1 (Zod 3.24+, Valibot 1, ArkType 2
 * …): what a handler may declare as its `input` or `output` (see `defineActor`).
 *
 * @example
 * ```ts
 * import type { StandardSchemaV1 } from "@troupe/troupe/spi";
 * // a hand-written schema: a positive number
 * const positive: StandardSchemaV1<number> = {
 *   "~standard": {
 *     version: 1,
 *     vendor: "example",
 *     validate: (value) =>
 *       typeof value === "number" && value > 0
 *         ? { value }
 *         : { issues: [{ message: "Expected a positive number" }] },
 *   },
 * };
 * ```
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The Standard Schema properties. */
  readonly "~standard": StandardSchemaProps<Input, Output>;
}

/** The properties of a {@link StandardSchemaV1} (`StandardSchemaV1.Props` in the spec). */
export interface StandardSchemaProps<Input = unknown, Output = Input> {
  /** The version of the spec. */
  readonly version: 1;
  /** The library that made the schema. */
  readonly vendor: string;
  /** Validates a value: a result, or a promise of one for asynchronous schemas. */
  readonly validate: (
    value: unknown,
    options?: StandardSchemaOptions | undefined,
  ) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
  /** The inferred types (a type-level field; never read at run time). */
  readonly types?: StandardSchemaTypes<Input, Output> | undefined;
}

/** Options of `validate` (`StandardSchemaV1.Options` in the spec). */
export interface StandardSchemaOptions {
  /** Options of the library, if it has any. */
  readonly libraryOptions?: Record<string, unknown> | undefined;
}

/** The types a schema carries (`StandardSchemaV1.Types` in the spec). */
export interface StandardSchemaTypes<Input = unknown, Output = Input> {
  /** The type of what the schema accepts. */
  readonly input: Input;
  /** The type of what it gives back. */
  readonly output: Output;
}

/** The result of `validate`: a value, or issues. */
export type StandardSchemaResult<Output> = StandardSchemaSuccess<Output> | StandardSchemaFailure;

/** A successful validation. */
export interface StandardSchemaSuccess<Output> {
  /** The validated value. */
  readonly value: Output;
  /** No issues. */
  readonly issues?: undefined;
}

/** A failed validation. */
export interface StandardSchemaFailure {
  /** What is wrong. */
  readonly issues: ReadonlyArray<StandardSchemaIssue>;
}

/** One issue of a failed validation. */
export interface StandardSchemaIssue {
  /** What is wrong. */
  readonly message: string;
  /** Where: property keys, or segments with a `key`. */
  readonly path?: ReadonlyArray<PropertyKey | StandardSchemaPathSegment> | undefined;
}

/** A segment of an issue's path. */
export interface StandardSchemaPathSegment {
  /** The property key. */
  readonly key: PropertyKey;
}

/** The type a schema accepts. */
export type InferInput<S> = S extends StandardSchemaV1<infer I, unknown> ? I : never;
/** The type a schema gives back. */
export type InferOutput<S> = S extends StandardSchemaV1<unknown, infer O> ? O : never;

// ---- input streams ----

const ITEMS = Symbol.for("troupe.streamOf");

/**
 * The schema of a handler's input stream (see {@link streamOf}): each item is checked against
 * `items` as the handler reads it.
 */
export interface StreamSchema<Input = unknown, Output = Input>
  extends StandardSchemaV1<AsyncIterable<Input>, AsyncIterable<Output>> {
  /** The schema of each item. */
  readonly items: StandardSchemaV1<Input, Output>;
}

/**
 * Declares that a handler reads a stream whose items each match `items`: the handler's
 * payload is an `AsyncIterable` of them, and callers pass any iterable. An item that fails
 * ends the handler's turn with `bad_payload` (its events are not written); the items before
 * it were handled.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { defineActor, streamOf } from "@troupe/troupe";
 *
 * export const Room = defineActor({
 *   name: "room",
 *   handlers: {
 *     shout: {
 *       input: streamOf(z.string().max(200)),
 *       async *handle(_ctx, lines) {
 *         for await (const line of lines) yield line.toUpperCase();
 *       },
 *     },
 *   },
 * });
 * ```
 */
export function streamOf<I, O>(items: StandardSchemaV1<I, O>): StreamSchema<I, O> {
  if (!isSchema(items)) throw new TypeError("streamOf() expects a Standard Schema");
  return {
    items,
    [ITEMS]: true,
    "~standard": {
      version: 1,
      vendor: "troupe",
      validate: (value) =>
        isStream(value)
          ? { value: value as AsyncIterable<O> }
          : { issues: [{ message: "Expected a stream of items" }] },
    },
  } as StreamSchema<I, O>;
}

/** Whether `value` is a schema made by {@link streamOf}. */
export function isStreamSchema(value: unknown): value is StreamSchema {
  return typeof value === "object" && value !== null && ITEMS in value;
}

/** Whether `value` implements Standard Schema v1. */
export function isSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  const props = (value as Partial<StandardSchemaV1>)["~standard"];
  return typeof props === "object" && props !== null && props.version === 1 &&
    typeof props.validate === "function";
}

function isStream(value: unknown): boolean {
  return typeof value === "object" && value !== null &&
    (Symbol.asyncIterator in value || Symbol.iterator in value);
}

// ---- issues ----

/** Where and what is wrong with a payload: the `data.issues` of a `bad_payload` error. */
export interface PayloadIssue {
  /** Property keys from the payload's root to the value at fault (`[]`: the payload itself). */
  readonly path: (string | number)[];
  /** What is wrong, as the schema library says it. */
  readonly message: string;
}

/** Most issues a `bad_payload` error carries (the rest are counted in its message). */
export const MAX_ISSUES = 20;
/** Longest issue message, in characters (longer ones are cut). */
const MAX_MESSAGE = 500;

function issuesOf(
  issues: ReadonlyArray<StandardSchemaIssue>,
  prefix: (string | number)[] = [],
): PayloadIssue[] {
  return issues.slice(0, MAX_ISSUES).map((issue) => ({
    path: [
      ...prefix,
      ...(issue.path ?? []).map((segment) => {
        const key = typeof segment === "object" && segment !== null ? segment.key : segment;
        return typeof key === "number" ? key : String(key);
      }),
    ],
    message: String(issue.message).slice(0, MAX_MESSAGE),
  }));
}

function describe(issues: readonly PayloadIssue[], total: number): string {
  const first = issues[0];
  if (!first) return "";
  const at = first.path.length === 0 ? "" : ` at ${first.path.join(".")}`;
  const more = total > 1 ? ` (and ${total - 1} more)` : "";
  return `: ${first.message}${at}${more}`;
}

/** The `bad_payload` error for a failed validation of `what` (e.g. `payload of account.deposit`). */
function refusal(
  what: string,
  issues: ReadonlyArray<StandardSchemaIssue>,
  prefix?: (string | number)[],
): BadPayloadError {
  const list = issuesOf(issues, prefix);
  return new BadPayloadError(`Invalid ${what}${describe(list, issues.length)}`, {
    data: { issues: list },
  });
}

// ---- checking ----

/** A check's outcome: `undefined` when the payload passed, else the error the caller gets. */
export type PayloadCheck = BadPayloadError | undefined;

/** What {@link checkPayload} needs of a handler's schemas. */
export interface HandlerSchemas {
  /** The payload's schema ({@link streamOf} for an input stream). */
  readonly input?: StandardSchemaV1;
  /** The reply's schema (each item's, for a streaming handler). */
  readonly output?: StandardSchemaV1;
}

function validate(
  schema: StandardSchemaV1,
  value: unknown,
  what: string,
  prefix?: (string | number)[],
): PayloadCheck | Promise<PayloadCheck> {
  const result = schema["~standard"].validate(value);
  if (result instanceof Promise) {
    return result.then((r) => (r.issues ? refusal(what, r.issues, prefix) : undefined));
  }
  return result.issues ? refusal(what, result.issues, prefix) : undefined;
}

/**
 * Checks a payload against its handler's `input` schema, on the node that runs the handler,
 * before the handler runs: `undefined` when it passes (or the handler declares none), else a
 * `bad_payload` error whose `data.issues` lists `{ path, message }`; a promise of one of them
 * when the schema is asynchronous. `streamed` says whether the payload is a caller's input
 * stream: only a {@link streamOf} schema takes one (its items are checked as the handler reads
 * them), and it takes nothing else.
 *
 * The handler receives the payload as it was sent: a schema that transforms (defaults,
 * coercion) is checked against, but its output does not replace the payload.
 *
 * @example
 * ```ts ignore
 * const refused = await checkPayload(Account.schemas.deposit, "account.deposit", "abc", false);
 * refused?.data; // { issues: [{ path: [], message: "Invalid input: expected number, …" }] }
 * ```
 */
export function checkPayload(
  schemas: HandlerSchemas | undefined,
  where: string,
  payload: unknown,
  streamed: boolean,
): PayloadCheck | Promise<PayloadCheck> {
  const input = schemas?.input;
  if (input === undefined) return undefined;
  if (isStreamSchema(input)) {
    return streamed ? undefined : new BadPayloadError(
      `Handler ${where} reads a stream: pass an async iterable or an iterator (an array is one value: pass array.values())`,
      { data: { issues: [{ path: [], message: "Expected a stream of items" }] } },
    );
  }
  if (streamed) {
    return new BadPayloadError(`Handler ${where} takes one payload, not a stream`, {
      data: { issues: [{ path: [], message: "Expected one payload, got a stream" }] },
    });
  }
  return validate(input, payload, `payload of ${where}`);
}

/** What {@link PayloadGate} needs of a message. */
export interface CheckedMessage {
  /** `type/id`: messages of one actor keep their order through the check. */
  readonly key: string;
  /** Handler name. */
  readonly handler: string;
  /** The decoded payload. */
  readonly payload: unknown;
  /** The caller's input stream, when the payload is one. */
  readonly input?: unknown;
  /** Deadline on the node clock's monotonic time: an asynchronous check waits no longer. */
  readonly deadline: number;
  /** Whether the caller has its outcome already. */
  readonly settled: boolean;
  /** Refuses the message. */
  reject(err: unknown): void;
}

/** What {@link PayloadGate} needs of a hosted type. */
export interface CheckedType {
  /** The actor type name. */
  readonly name: string;
  /** The schemas of the handlers that declare them (a prototype-less record). */
  readonly schemas: Readonly<Record<string, HandlerSchemas>>;
}

/**
 * The payload check of one node's message path. {@link PayloadGate.pass} hands a message whose
 * payload passed its handler's schema on to `next`, and refuses the others with
 * `bad_payload`; a message waits for the asynchronous checks of earlier messages to the same
 * actor, so a quick check never lets a later message overtake an earlier one. A message
 * without a schema, while no check is pending on the node, goes straight on (no allocation).
 *
 * @example
 * ```ts ignore
 * readonly #payloads = new PayloadGate<Call>(clock, (def, call) => this.#checked(def, call));
 * // in deliver(), after admit():
 * this.#payloads.pass(def, call);
 * ```
 */
export class PayloadGate<M extends CheckedMessage, T extends CheckedType = CheckedType> {
  /** Per actor key: settles once the last pending check before it has gone on. */
  readonly #tails = new Map<string, Promise<void>>();
  readonly #next: (def: T, m: M) => void;
  readonly #clock: Clock;

  /**
   * @param clock The node's clock (messages' deadlines are on it).
   * @param next Where a message goes once its payload passed.
   */
  constructor(clock: Clock, next: (def: T, m: M) => void) {
    this.#clock = clock;
    this.#next = next;
  }

  /** Checks `m` and hands it on if it passed, in arrival order per actor key. */
  pass(def: T, m: M): void {
    const schemas = def.schemas[m.handler];
    if (schemas === undefined && this.#tails.size === 0) return this.#next(def, m);
    const where = `${def.name}.${m.handler}`;
    const tail = this.#tails.get(m.key);
    let check: PayloadCheck | Promise<PayloadCheck>;
    try {
      check = checkPayload(schemas, where, m.payload, m.input !== undefined);
    } catch (err) {
      check = Promise.reject(err);
    }
    if (tail === undefined && !(check instanceof Promise)) {
      return check === undefined ? this.#next(def, m) : m.reject(check);
    }
    const settle = (refused: unknown) => {
      if (m.settled) return;
      if (refused === undefined) this.#next(def, m);
      else m.reject(refused);
    };
    const done = Promise.all([tail, bounded(this.#clock, check, m.deadline, where)]).then(
      ([, refused]) => settle(refused),
      (err) => settle(err),
    );
    this.#tails.set(m.key, done);
    void done.finally(() => {
      if (this.#tails.get(m.key) === done) this.#tails.delete(m.key);
    });
  }
}

/** The check, failing with `timeout` at the deadline, and `internal` if the schema throws. */
function bounded(
  clock: Clock,
  check: PayloadCheck | Promise<PayloadCheck>,
  deadline: number,
  where: string,
): PayloadCheck | Promise<PayloadCheck> {
  if (!(check instanceof Promise)) return check;
  let timer: TimerId | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = clock.setTimeout(
      () => reject(new TimeoutError(`The payload check of ${where} passed the deadline`)),
      Math.max(0, deadline - clock.monotonic()),
    );
  });
  return Promise.race([
    check.catch((err) => {
      throw new InternalError("Internal error", { cause: err });
    }),
    late,
  ]).finally(() => clock.clearTimeout(timer));
}

// ---- inside the turn: input stream items and replies ----

/**
 * The items of an input stream, each checked against `items` as the handler reads it: an
 * item that fails throws `bad_payload` into the handler (its path starts with the item's
 * index) and cancels the stream.
 */
export async function* checkedItems(
  stream: AsyncIterable<unknown>,
  items: StandardSchemaV1,
  where: string,
): AsyncGenerator<unknown, void, undefined> {
  let index = 0;
  for await (const item of stream) {
    const refused = await validate(items, item, `input item ${index} of ${where}`, [index]);
    if (refused) throw refused;
    yield item;
    index++;
  }
}

function replyError(where: string, issues: ReadonlyArray<StandardSchemaIssue>): Error {
  const list = issuesOf(issues);
  return new TypeError(
    `The reply of ${where} does not match its output schema${describe(list, issues.length)}`,
  );
}

/**
 * Checks a reply against the handler's `output` schema inside the turn: a mismatch is the
 * handler's bug, so it fails the turn like any error the handler throws (its events are
 * dropped, the caller gets `internal`, the node logs why).
 */
export function checkedReply(
  reply: unknown,
  output: StandardSchemaV1,
  where: string,
): unknown {
  const check = (value: unknown) => {
    const result = output["~standard"].validate(value);
    const settle = (r: StandardSchemaResult<unknown>) => {
      if (r.issues) throw replyError(where, r.issues);
      return value;
    };
    return result instanceof Promise ? result.then(settle) : settle(result);
  };
  return reply instanceof Promise ? reply.then(check) : check(reply);
}

/** The items a streaming handler yields, each checked against its `output` schema. */
export async function* checkedYields(
  items: AsyncIterable<unknown> | Iterable<unknown>,
  output: StandardSchemaV1,
  where: string,
): AsyncGenerator<unknown, void, undefined> {
  for await (const item of items) {
    const result = await output["~standard"].validate(item);
    if (result.issues) throw replyError(`${where} (an item)`, result.issues);
    yield item;
  }
}
