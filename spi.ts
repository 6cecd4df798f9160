/**
 * Troupe for adapter authors (`@troupe/troupe/spi`): the ports a runtime plugs into, the
 * conformance suites every implementation of a port passes, and the helpers the first-party
 * adapters (NATS, libSQL, Hono) are built with. Users write against the package root
 * (`@troupe/troupe`); this entry is for code that implements a port or sits beside the runtime.
 *
 * - **Ports**: {@link Mesh} (routing, pub/sub and a key-value store: {@link MeshConnection},
 *   {@link KvBucket}), {@link Journal} (event logs, snapshots, idempotency records, reminders),
 *   {@link StoreBackend} (records behind `system.store()`), {@link ConfigSource} (dynamic
 *   config), {@link Codec} (payload encodings) and {@link Clock} (time and timers).
 * - **Conformance suites**: {@link meshConformance}, {@link journalConformance} and
 *   {@link storeConformance} register `Deno.test`s; run them from your adapter's own test file
 *   (`deno test`), as Troupe runs them against its in-process and its NATS and libSQL ports.
 * - **Helpers**: wire errors ({@link errorClasses}, {@link toWireError},
 *   {@link fromWireError}), append and claim validation ({@link validateAppend}, …), store key
 *   order ({@link prefixEnd}, {@link storeConflict}), subject tokens ({@link encodeToken},
 *   {@link isValidSubject}), async helpers ({@link delay}, {@link deferred},
 *   {@link TimerWheel}, {@link createEventQueue}), the codecs ({@link msgpack}, {@link json}),
 *   and token verification for a gateway ({@link createVerifier}).
 * - **Type helpers** the user API's signatures are built from (`DefinitionOptions`,
 *   `HandlerPayloads`, `AskKeys`, the Standard Schema interfaces, …) and the parts of the
 *   cluster view (`NodeStats`, `TypeReport`, …), for tools written beside the runtime.
 *
 * @example A third-party journal, checked by the same suite as Troupe's own
 * ```ts
 * // my_journal_test.ts, run with `deno test`
 * import { memoryJournal } from "@troupe/troupe";
 * import { type Journal, journalConformance, validateAppend } from "@troupe/troupe/spi";
 *
 * function myJournal(): Journal {
 *   const inner = memoryJournal();
 *   return {
 *     ...inner,
 *     append(a) {
 *       validateAppend(a); // the checks every journal makes, with the same errors
 *       return inner.append(a);
 *     },
 *   };
 * }
 *
 * journalConformance("my journal", () => Promise.resolve(myJournal()));
 * ```
 *
 * @module
 */

// ---- ports ----

export type {
  DurableConsumer,
  DurableConsumerConfig,
  DurableConsumption,
  DurableMessage,
  DurablePublishOptions,
  DurableReceipt,
  DurableStart,
  DurableTopics,
  KvBucket,
  KvEntry,
  KvIncarnation,
  KvOptions,
  KvWatch,
  Mesh,
  MeshConnection,
  MeshErrorCode,
  MeshHeaders,
  MeshMessage,
  MeshStatus,
  MeshSubscription,
  PublishOptions,
  RequestHandle,
  RequestOptions,
  SubscribeOptions,
} from "./src/mesh/types.ts";
export { MeshError } from "./src/mesh/types.ts";
export type {
  Append,
  Claim,
  CommittedEvent,
  IdempotencyRecord,
  Journal,
  NewEvent,
  OutboxMessage,
  Owned,
  Recovered,
  Reminder,
  Snapshot,
  StoredEvent,
  StoredReply,
} from "./src/journal/types.ts";
export { IDEMPOTENCY_RETENTION, isOwned } from "./src/journal/types.ts";
export type { StoreBackend, StoredRecord, StoreSource } from "./src/store/types.ts";
export type {
  ConfigSource,
  ConfigSourceContext,
  RunningConfigSource,
  Widen,
} from "./src/config/types.ts";
export type { Codec } from "./src/codec/types.ts";
export type { Clock, TimerId } from "./src/util/clock.ts";
export { MAX_TIMER_MS, systemClock } from "./src/util/clock.ts";
export { virtualClock } from "./src/util/virtual_clock.ts";
export type { VirtualClock } from "./src/util/virtual_clock.ts";

// ---- conformance suites ----

export { meshConformance } from "./src/mesh/conformance.ts";
export type { MeshConformanceOptions, MeshFixture } from "./src/mesh/conformance.ts";
export { durableTopicsConformance } from "./src/mesh/durable_conformance.ts";
export type { DurableTopicsConformanceOptions } from "./src/mesh/durable_conformance.ts";
export { journalConformance } from "./src/journal/conformance.ts";
export { storeConformance } from "./src/store/conformance.ts";

// ---- helpers ----

export { errorClasses, fromWireError, toWireError } from "./src/errors.ts";
export type { CodedErrorClass, CodedErrorOptions, WireError } from "./src/errors.ts";
export {
  staleEpoch,
  unexpectedSeq,
  validateAppend,
  validateClaim,
  validateFeedRead,
} from "./src/journal/validate.ts";
export { memoryStore } from "./src/store/memory.ts";
export { compareKeys, prefixEnd, storeConflict } from "./src/store/keys.ts";
export {
  decodeToken,
  encodeToken,
  isValidSubject,
  patternCovers,
  subjectMatches,
} from "./src/mesh/subject.ts";
export { allows } from "./src/auth/access.ts";
export { codecFor, DEFAULT_MAX_PAYLOAD, json, msgpack } from "./src/codec/mod.ts";
export {
  fromJsonText,
  fromJsonValue,
  jsonCodec,
  jsonSyntaxError,
  toJsonText,
  toJsonTree,
} from "./src/codec/json.ts";
export type { JsonCodecOptions } from "./src/codec/json.ts";
export { msgpackCodec } from "./src/codec/msgpack.ts";
export type { MsgpackCodecOptions } from "./src/codec/msgpack.ts";
export { deferred, delay, isPromiseLike, TimerWheel, withDeadline } from "./src/util/async.ts";
export type { Deferred, WheelEntry } from "./src/util/async.ts";
export { createEventQueue } from "./src/util/queue.ts";
export type { EventQueue } from "./src/util/queue.ts";
export { installSocketGuard } from "./src/util/socket_guard.ts";
export { createVerifier } from "./src/auth/verify.ts";
export type { Verified, Verifier } from "./src/auth/verify.ts";

// ---- type helpers of the user API, and the parts of the cluster view ----

export type {
  ActorSpec,
  AnyActorTypes,
  AnyFn,
  DefinitionOptions,
  HandlerFn,
  HandlerPayloads,
  HandlerResults,
  Hook,
  SchemaHandler,
} from "./src/actor/define.ts";
export type {
  Args,
  AskKeys,
  HandlerKeys,
  ItemOf,
  PayloadArg,
  PayloadOf,
  ReplyOf,
  StreamKeys,
} from "./src/actor/ref.ts";
export type { DeadLetterInfo } from "./src/dispatch/pubsub.ts";
export type { InProcessDurableOptions } from "./src/mesh/in_process.ts";
export type { ConfigWatch, SourceHealth } from "./src/config/types.ts";
export type {
  HandlerSchemas,
  InferInput,
  InferOutput,
  StandardSchemaFailure,
  StandardSchemaIssue,
  StandardSchemaOptions,
  StandardSchemaPathSegment,
  StandardSchemaProps,
  StandardSchemaResult,
  StandardSchemaSuccess,
  StandardSchemaTypes,
  StandardSchemaV1,
  StreamSchema,
} from "./src/actor/schema.ts";
export type {
  ActorEvent,
  ActorReport,
  ClusterOptions,
  ClusterStats,
  InspectOptions,
  LeaseReport,
  NodeStats,
  ProjectionReport,
  TypeReport,
} from "./src/observe/cluster.ts";
export type { RecentError } from "./src/observe/node.ts";
