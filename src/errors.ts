/**
 * Errors that callers of Troupe see. Every error has a stable snake_case `code` so callers can
 * `switch (err.code)`; only {@link ActorError}s cross the wire unmasked.
 *
 * @module
 */

/** The stable error codes used by Troupe itself. Handlers may use any other code of their own. */
export type ErrorCode =
  | "timeout"
  | "unknown_handler"
  | "unknown_actor_type"
  | "bad_payload"
  | "unauthorized"
  | "forbidden"
  | "overloaded"
  | "rate_limited"
  | "unavailable"
  | "deadlock"
  | "conflict"
  | "closed"
  | "internal";

/** Options of {@link ActorError}. */
export interface ActorErrorOptions {
  /** A stable snake_case code. @default {"error"} */
  code?: string;
  /** The underlying error. */
  cause?: unknown;
  /** Extra data that travels with the error across the wire (must be encodable). */
  data?: unknown;
}

/**
 * An error a caller sees. Thrown by handlers to reject a message with a code the caller can
 * rely on; its code, message and data travel across the wire unchanged.
 *
 * @example
 * ```ts
 * import { ActorError } from "@troupe/troupe";
 * throw new ActorError("insufficient funds", { code: "insufficient" });
 * ```
 */
export class ActorError extends Error {
  /** A stable code: one of {@link ErrorCode} or a handler's own. */
  readonly code: string;
  /** Extra data sent with the error; absent (not even an own `undefined`) when there is none. */
  declare readonly data?: unknown;

  /**
   * Makes an error with a code.
   *
   * @param message A sentence that says what failed.
   * @param options The code, cause and data.
   */
  constructor(message: string, options: ActorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? "error";
    if (options.data !== undefined) this.data = options.data;
  }
}

/** Options of the fixed-code error classes. */
export type CodedErrorOptions = Omit<ActorErrorOptions, "code">;

/**
 * The deadline of a request passed before its reply came.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "@troupe/troupe";
 * const err = new TimeoutError("ask account/alice.deposit timed out after 100 ms");
 * console.log(err.code); // "timeout"
 * ```
 */
export class TimeoutError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "timeout" });
  }
}
/**
 * The actor type has no handler of that name.
 *
 * @example
 * ```ts
 * import { UnknownHandlerError } from "@troupe/troupe";
 * new UnknownHandlerError('Actor type "account" has no handler "nope"');
 * ```
 */
export class UnknownHandlerError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "unknown_handler" });
  }
}
/**
 * No node of the cluster knows that actor type.
 *
 * @example
 * ```ts
 * import { UnknownActorTypeError } from "@troupe/troupe";
 * new UnknownActorTypeError('Unknown actor type "nope"');
 * ```
 */
export class UnknownActorTypeError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "unknown_actor_type" });
  }
}
/**
 * A payload could not be decoded, or is larger than the limit.
 *
 * @example
 * ```ts
 * import { BadPayloadError } from "@troupe/troupe";
 * new BadPayloadError("Payload of 2000000 bytes exceeds the limit of 1048576 bytes");
 * ```
 */
export class BadPayloadError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "bad_payload" });
  }
}
/**
 * The caller is not allowed to send that message.
 *
 * @example
 * ```ts
 * import { UnauthorizedError } from "@troupe/troupe";
 * new UnauthorizedError("Token expired");
 * ```
 */
export class UnauthorizedError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "unauthorized" });
  }
}
/**
 * A verified caller that no access rule allows.
 *
 * @example
 * ```ts
 * import { ForbiddenError } from "@troupe/troupe";
 * new ForbiddenError('Caller "bob" may not call account.withdraw');
 * ```
 */
export class ForbiddenError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what was refused.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "forbidden" });
  }
}

/**
 * The actor's mailbox is full.
 *
 * @example
 * ```ts
 * import { OverloadedError } from "@troupe/troupe";
 * new OverloadedError("Mailbox of account/alice is full (1000 messages)");
 * ```
 */
export class OverloadedError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "overloaded" });
  }
}
/**
 * A caller (or client address) sent more than its rate allows; try again after a while.
 *
 * @example
 * ```ts
 * import { RateLimitedError } from "@troupe/troupe";
 * const err = new RateLimitedError("Too many requests from 203.0.113.7");
 * console.log(err.code); // "rate_limited"
 * ```
 */
export class RateLimitedError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what was refused.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "rate_limited" });
  }
}

/**
 * No node can host the actor now, or the node that hosted it went away.
 *
 * @example
 * ```ts
 * import { UnavailableError } from "@troupe/troupe";
 * new UnavailableError('No live node hosts actor type "account"');
 * ```
 */
export class UnavailableError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "unavailable" });
  }
}
/**
 * A call chain came back to an actor that is busy waiting on that same chain (A → B → A).
 *
 * @example
 * ```ts
 * import { DeadlockError } from "@troupe/troupe";
 * new DeadlockError("account/alice is already handling a message of this call chain");
 * ```
 */
export class DeadlockError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "deadlock" });
  }
}
/**
 * A write was refused because another activation or writer came first (fencing).
 *
 * @example
 * ```ts
 * import { ConflictError } from "@troupe/troupe";
 * new ConflictError("Epoch 3 of account/alice is stale (current 4)");
 * ```
 */
export class ConflictError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "conflict" });
  }
}
/**
 * The system, or the resource, was closed.
 *
 * @example
 * ```ts
 * import { ClosedError } from "@troupe/troupe";
 * new ClosedError("The system is closed");
 * ```
 */
export class ClosedError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "closed" });
  }
}
/**
 * An unexpected error inside a handler or the runtime; details are logged, not sent.
 *
 * @example
 * ```ts
 * import { InternalError } from "@troupe/troupe";
 * new InternalError("Internal error");
 * ```
 */
export class InternalError extends ActorError {
  /**
   * Makes the error.
   *
   * @param message A sentence that says what failed.
   * @param options The cause and data.
   */
  constructor(message: string, options: CodedErrorOptions = {}) {
    super(message, { ...options, code: "internal" });
  }
}

/** A class of {@link ActorError} with a fixed code (`new C(message, { data })`). */
export type CodedErrorClass = new (message: string, options?: CodedErrorOptions) => ActorError;

/**
 * The one mapping from Troupe's error codes to their classes, used wherever an error comes
 * back from the wire (the mesh, the HTTP client): a code missing here would come back as a
 * plain {@link ActorError}. A Map, not an object literal: a code from the wire such as
 * `constructor` or `__proto__` must not find a property of Object.prototype.
 *
 * @example
 * ```ts
 * import { errorClasses, ForbiddenError } from "./errors.ts";
 * console.log(errorClasses.get("forbidden") === ForbiddenError); // true
 * ```
 */
export const errorClasses: ReadonlyMap<string, CodedErrorClass> = new Map(
  Object.entries(
    {
      timeout: TimeoutError,
      unknown_handler: UnknownHandlerError,
      unknown_actor_type: UnknownActorTypeError,
      bad_payload: BadPayloadError,
      unauthorized: UnauthorizedError,
      forbidden: ForbiddenError,
      overloaded: OverloadedError,
      rate_limited: RateLimitedError,
      unavailable: UnavailableError,
      deadlock: DeadlockError,
      conflict: ConflictError,
      closed: ClosedError,
      internal: InternalError,
    } satisfies Record<ErrorCode, CodedErrorClass>, // every code of ErrorCode, checked
  ),
);

/** The plain shape of an error on the wire. */
export interface WireError {
  /** The error's {@link ActorError.code}. */
  code: string;
  /** The error's message. */
  message: string;
  /** The error's {@link ActorError.data}, when it has some. */
  data?: unknown;
}

/**
 * Turns any thrown value into what may cross the wire: an {@link ActorError} keeps its code,
 * message and data; anything else becomes `internal` (and `onMasked` is told, to log it).
 *
 * @example
 * ```ts
 * import { ActorError } from "@troupe/troupe";
 * import { toWireError } from "@troupe/troupe/spi";
 * console.log(toWireError(new ActorError("no funds", { code: "insufficient" })));
 * // { code: "insufficient", message: "no funds" }
 * console.log(toWireError(new Error("db password is x"), (err) => console.error(err)));
 * // { code: "internal", message: "Internal error" }
 * ```
 */
export function toWireError(err: unknown, onMasked?: (err: unknown) => void): WireError {
  if (err instanceof ActorError) {
    const w: WireError = { code: err.code, message: err.message };
    if (err.data !== undefined) w.data = err.data;
    return w;
  }
  onMasked?.(err);
  return { code: "internal", message: "Internal error" };
}

/**
 * Rebuilds an error from the wire, with the subclass of its code where Troupe has one. Any
 * other code (a handler's own, or one that names an `Object.prototype` property such as
 * `constructor`) gives a plain {@link ActorError} with that code.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "@troupe/troupe";
 * import { fromWireError } from "@troupe/troupe/spi";
 * const err = fromWireError({ code: "timeout", message: "ask account/a.deposit timed out" });
 * console.log(err instanceof TimeoutError); // true
 * ```
 */
export function fromWireError(w: WireError): ActorError {
  const C = errorClasses.get(w.code);
  const opts = w.data === undefined ? {} : { data: w.data };
  return C ? new C(w.message, opts) : new ActorError(w.message, { ...opts, code: w.code });
}
