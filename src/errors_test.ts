import assert from "node:assert/strict";
import {
  ActorError,
  BadPayloadError,
  ClosedError,
  ConflictError,
  DeadlockError,
  errorClasses,
  ForbiddenError,
  fromWireError,
  InternalError,
  OverloadedError,
  RateLimitedError,
  TimeoutError,
  toWireError,
  UnauthorizedError,
  UnavailableError,
  UnknownActorTypeError,
  UnknownHandlerError,
} from "./errors.ts";

// Names that an object literal would find on Object.prototype.
const PROTOTYPE_NAMES = [
  "constructor",
  "toString",
  "__proto__",
  "hasOwnProperty",
  "valueOf",
  "isPrototypeOf",
  "__defineGetter__",
];

Deno.test("fromWireError() gives a plain ActorError for codes named like Object.prototype properties", () => {
  for (const code of PROTOTYPE_NAMES) {
    const err = fromWireError({ code, message: `Failed with ${code}`, data: { n: 1 } });
    assert.ok(err instanceof ActorError, `code "${code}" gave ${String(err)}`);
    assert.equal(Object.getPrototypeOf(err), ActorError.prototype, `code "${code}"`);
    assert.equal(err.code, code);
    assert.equal(err.message, `Failed with ${code}`);
    assert.equal(err.name, "ActorError");
    assert.deepEqual(err.data, { n: 1 });
  }
});

Deno.test("fromWireError() gives the subclass of each of Troupe's own codes", () => {
  const classes = {
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
  };
  assert.deepEqual([...errorClasses.keys()].sort(), Object.keys(classes).sort());
  for (const [code, C] of Object.entries(classes)) {
    const err = fromWireError({ code, message: "m" });
    assert.equal(Object.getPrototypeOf(err), C.prototype, `code "${code}"`);
    assert.equal(err.code, code);
    assert.equal(err.name, C.name);
    assert.equal("data" in err, false);
  }
  const own = fromWireError({ code: "insufficient", message: "No funds", data: [1] });
  assert.equal(Object.getPrototypeOf(own), ActorError.prototype);
  assert.equal(own.code, "insufficient");
  assert.deepEqual(own.data, [1]);
});

Deno.test("toWireError() keeps an ActorError's code, message and data as a plain object", () => {
  const data = { balance: 3, when: new Date(0) };
  const w = toWireError(new ActorError("No funds", { code: "insufficient", data }));
  assert.equal(Object.getPrototypeOf(w), Object.prototype);
  assert.deepEqual(Object.keys(w), ["code", "message", "data"]);
  assert.deepEqual(w, { code: "insufficient", message: "No funds", data });
  // No `data` key at all when the error has none, so nothing `undefined` is encoded.
  assert.deepEqual(Object.keys(toWireError(new TimeoutError("late"))), ["code", "message"]);
});

Deno.test("toWireError() masks anything but an ActorError as internal and reports it", () => {
  for (const thrown of [new Error("secret"), "text", undefined, { code: "conflict" }]) {
    const masked: unknown[] = [];
    const w = toWireError(thrown, (e) => masked.push(e));
    assert.deepEqual(w, { code: "internal", message: "Internal error" });
    assert.deepEqual(masked, [thrown]);
  }
});
