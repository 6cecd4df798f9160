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

import { createSystem as createSystemCore, type System } from "./src/system.ts";
import type { SystemOptions } from "./src/options.ts";

// Actor types, and what their handlers see.
export { defineActor } from "./src/actor/define.ts";
export type {
  ActorDefinition,
  ActorTypes,
  Context,
  ContextPublishOptions,
  EventsOf,
  ScheduleOptions,
  StateOf,
  Upcasters,
} from "./src/actor/define.ts";
export { streamOf } from "./src/actor/schema.ts";
export type { PayloadIssue } from "./src/actor/schema.ts";

// Talking to actors.
export type {
  ActorRef,
  ActorStream,
  AskOptions,
  Caller,
  RefOptions,
  StreamOptions,
  TellOptions,
} from "./src/actor/ref.ts";

// A node.
export type { FeedEvent, FeedOptions } from "./src/actor/feed.ts";
export type { Projection, ProjectionOptions } from "./src/actor/projection.ts";
export type {
  Directory,
  HistoryEvent,
  Subscription,
  System,
  SystemOptions,
  SystemStatus,
  TopicPublishOptions,
  TopicSubscribeOptions,
} from "./src/system.ts";
export type { Delivery, DurableSubscribeOptions, TopicHandler } from "./src/dispatch/pubsub.ts";
export { consoleLogger } from "./src/util/log.ts";
export type { Logger, LogLevel } from "./src/util/log.ts";
export { memoryJournal } from "./src/journal/memory.ts";
export type { MemoryJournalOptions } from "./src/journal/memory.ts";
export { inProcessMesh } from "./src/mesh/in_process.ts";
export type { InProcessMeshOptions } from "./src/mesh/in_process.ts";

// Errors callers catch.
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

// Identities and access rules.
export type { AccessMap, AccessRule, Decision, SystemRule, TopicRule } from "./src/auth/access.ts";
export type { AuthOptions, VerifyKey } from "./src/auth/verify.ts";

// Leases, elections and the directory.
export type {
  DirectoryEvent,
  ElectOptions,
  Leader,
  Lease,
  LeaseOptions,
  NodeInfo,
} from "./src/directory/types.ts";

// Records.
export type {
  Store,
  StoreDeleteOptions,
  StoreListOptions,
  StoreRecord,
  StoreSetOptions,
} from "./src/store/types.ts";

// Dynamic config.
export { ConfigError } from "./src/config/config.ts";
export { fromEnv } from "./src/config/env.ts";
export type { FromEnvOptions } from "./src/config/env.ts";
export { fromFile } from "./src/config/file.ts";
export type { FromFileOptions } from "./src/config/file.ts";
export { fromKv } from "./src/config/kv.ts";
export type { FromKvOptions } from "./src/config/kv.ts";
export type { Config, ConfigOptions, ConfigView } from "./src/config/types.ts";

// What the cluster's nodes report (`system.cluster`; the parts of its reports are in `./spi`).
export type { Cluster } from "./src/observe/cluster.ts";

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
