/**
 * Troupe: an actor and event-sourced runtime for Deno and edge workers.
 *
 * Define actor types with {@link defineActor}, start a node with {@link createSystem}, and
 * talk to actors by name through typed refs. Events are persisted in libSQL (pass a
 * `journal` URL) and the cluster runs on NATS (`natsMesh` from `@troupe/troupe/nats`); with
 * no options a node runs alone on an in-process mesh with an in-memory journal.
 *
 * @example
 * ```ts
 * import { createSystem, defineActor } from "@troupe/troupe";
 *
 * const Account = defineActor({
 *   name: "account",
 *   initialState: () => ({ balance: 0 }),
 *   events: {
 *     deposited: (s, e: { amount: number }) => ({ balance: s.balance + e.amount }),
 *   },
 *   handlers: {
 *     deposit(ctx, amount: number) {
 *       ctx.emit("deposited", { amount });
 *       return ctx.state.balance;
 *     },
 *     balance: (ctx) => ctx.state.balance,
 *   },
 * });
 *
 * const system = await createSystem({ actors: [Account], journal: ":memory:" });
 * await system.ref(Account, "alice").ask("deposit", 100); // 100
 * await system.close();
 * ```
 *
 * @module
 */

import { createSystem as createSystemCore, type System, type SystemOptions } from "./src/system.ts";

export { defineActor } from "./src/actor/define.ts";
export type {
  ActorDefinition,
  ActorSpec,
  ActorTypes,
  AnyActorTypes,
  AnyFn,
  DefinitionOptions,
  EventsOf,
  HandlerFn,
  HandlerPayloads,
  HandlerResults,
  Hook,
  SchemaHandler,
  StateOf,
  Upcasters,
} from "./src/actor/define.ts";
export { streamOf } from "./src/actor/schema.ts";
export type {
  HandlerSchemas,
  InferInput,
  InferOutput,
  PayloadIssue,
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
export type { Context } from "./src/actor/context.ts";
export type {
  ActorRef,
  ActorStream,
  Args,
  AskKeys,
  AskOptions,
  Caller,
  HandlerKeys,
  ItemOf,
  PayloadArg,
  PayloadOf,
  RefOptions,
  ReplyOf,
  StreamKeys,
  StreamOptions,
  TellOptions,
} from "./src/actor/ref.ts";
export { consoleLogger } from "./src/actor/envelope.ts";
export type { Logger, LogLevel } from "./src/actor/envelope.ts";
export type {
  Directory,
  HistoryEvent,
  Subscription,
  System,
  SystemOptions,
  SystemStatus,
} from "./src/system.ts";
export type { AccessMap, AccessRule, Decision, SystemRule, TopicRule } from "./src/auth/access.ts";
export type { AuthOptions, VerifyKey } from "./src/auth/verify.ts";
export type {
  DirectoryEvent,
  ElectOptions,
  Leader,
  Lease,
  LeaseOptions,
  NodeInfo,
} from "./src/directory/types.ts";
export {
  ActorError,
  BadPayloadError,
  ClosedError,
  ConflictError,
  DeadlockError,
  ForbiddenError,
  InternalError,
  OverloadedError,
  RateLimitedError,
  TimeoutError,
  UnauthorizedError,
  UnavailableError,
  UnknownActorTypeError,
  UnknownHandlerError,
} from "./src/errors.ts";
export type { ActorErrorOptions, ErrorCode } from "./src/errors.ts";
export { memoryJournal } from "./src/journal/memory.ts";
export type { MemoryJournalOptions } from "./src/journal/memory.ts";
export { isOwned } from "./src/journal/types.ts";
export type {
  Append,
  Claim,
  CommittedEvent,
  IdempotencyRecord,
  Journal,
  NewEvent,
  Owned,
  Recovered,
  Reminder,
  Snapshot,
  StoredEvent,
  StoredReply,
} from "./src/journal/types.ts";
export { inProcessMesh } from "./src/mesh/in_process.ts";
export type { InProcessMeshOptions } from "./src/mesh/in_process.ts";
export type {
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
export { memoryStore } from "./src/store/memory.ts";
export type {
  Store,
  StoreBackend,
  StoreDeleteOptions,
  StoredRecord,
  StoreListOptions,
  StoreRecord,
  StoreSetOptions,
  StoreSource,
} from "./src/store/types.ts";
export { json, msgpack } from "./src/codec/mod.ts";
export { ConfigError } from "./src/config/config.ts";
export { fromEnv } from "./src/config/env.ts";
export type { FromEnvOptions } from "./src/config/env.ts";
export { fromFile } from "./src/config/file.ts";
export type { FromFileOptions } from "./src/config/file.ts";
export { fromKv } from "./src/config/kv.ts";
export type { FromKvOptions } from "./src/config/kv.ts";
export type {
  Config,
  ConfigOptions,
  ConfigSource,
  ConfigSourceContext,
  ConfigView,
  ConfigWatch,
  RunningConfigSource,
  SourceHealth,
  Widen,
} from "./src/config/types.ts";
export type { Codec } from "./src/codec/types.ts";
export type {
  ActorEvent,
  ActorReport,
  Cluster,
  ClusterOptions,
  ClusterStats,
  InspectOptions,
  LeaseReport,
  NodeStats,
  TypeReport,
} from "./src/observe/cluster.ts";
export type { RecentError } from "./src/observe/node.ts";
export type { Clock, TimerId } from "./src/util/clock.ts";

/**
 * Starts a node. With no options it hosts nothing, keeps events in memory and runs on a
 * private in-process mesh; pass `actors` to host types, `journal` (a libSQL URL such as
 * `"file:./data/troupe.db"`, or a {@link Journal}) to persist, and `mesh` to join a cluster.
 * A journal URL loads the libSQL adapter on demand, so importing this module never loads it.
 *
 * @example
 * ```ts
 * import { createSystem, defineActor } from "@troupe/troupe";
 * const Echo = defineActor({ name: "echo", handlers: { say: (_ctx, s: string) => s } });
 * const system = await createSystem({ actors: [Echo], journal: ":memory:" });
 * console.log(await system.ref(Echo, "e1").ask("say", "hi")); // "hi"
 * await system.close();
 * ```
 */
export function createSystem(options: SystemOptions = {}): Promise<System> {
  return createSystemCore(options, {
    resolveJournal: async (url, now) => {
      const { libsqlJournal } = await import("./adapters/libsql/mod.ts");
      return libsqlJournal({ url, now });
    },
  });
}
