/**
 * `createSystem`: one node of a Troupe cluster, and the composition root of the runtime. The
 * options become one validated configuration (`nodeConfig`, options.ts); this file opens what
 * it names (journal, mesh connection, config), wires the parts (membership, ownership, leases,
 * the message path, reminders, stores, the observer) and owns their lifecycle. Each role lives
 * in its own module: access checks in the message path (`dispatch/access.ts`), history with the
 * journal (`journal/history.ts`), the directory view with the directory (`directory/view.ts`).
 *
 * @module
 */

import type { ActorDefinition, ActorTypes, AnyActorTypes } from "./actor/define.ts";
import { type ActorRef, makeRef, type RefOptions } from "./actor/ref.ts";
import { Reminders } from "./actor/reminders.ts";
import type { Decision } from "./auth/access.ts";
import { msgpack } from "./codec/mod.ts";
import { type FeedEvent, type FeedOptions, parsePosition, readFeed } from "./actor/feed.ts";
import { type Projection, type ProjectionOptions, startProjection } from "./actor/projection.ts";
import { Outbox } from "./dispatch/outbox.ts";
import type { Codec } from "./codec/types.ts";
import { createConfig, type ManagedConfig } from "./config/config.ts";
import type { Config } from "./config/types.ts";
import { createLeases, type Leases } from "./directory/leases.ts";
import { type Membership, startMembership } from "./directory/membership.ts";
import { createOwnership, type Ownership } from "./directory/ownership.ts";
import type { ElectOptions, Leader, Lease, LeaseOptions, NodeInfo } from "./directory/types.ts";
import { type Directory, directoryView } from "./directory/view.ts";
import { Dispatch } from "./dispatch/dispatch.ts";
import type { DurableSubscribeOptions, TopicHandler } from "./dispatch/pubsub.ts";
import { isReplySubject, subjects } from "./dispatch/subjects.ts";
import { ClosedError } from "./errors.ts";
import { type HistoryEvent, readHistory } from "./journal/history.ts";
import { memoryJournal } from "./journal/memory.ts";
import type { Journal } from "./journal/types.ts";
import { inProcessMesh } from "./mesh/in_process.ts";
import type { MeshConnection } from "./mesh/types.ts";
import { type Cluster, clusterClient } from "./observe/cluster.ts";
import type { Responder } from "./observe/control.ts";
import { measuredJournal } from "./observe/journal.ts";
import { NodeObserver } from "./observe/node.ts";
import { serveObservation } from "./observe/serve.ts";
import { type NodeConfig, nodeConfig, type SystemOptions } from "./options.ts";
import { Stores } from "./store/store.ts";
import type { Store } from "./store/types.ts";
import { TimerWheel } from "./util/async.ts";
import type { Clock } from "./util/clock.ts";

export type { SystemOptions } from "./options.ts";
export type { HistoryEvent } from "./journal/history.ts";
export type { Directory } from "./directory/view.ts";

/**
 * Options of {@link System.publish}.
 *
 * @example
 * ```ts
 * import type { TopicPublishOptions } from "@troupe/troupe";
 * const options: TopicPublishOptions = { durable: true, id: "order-42-created" };
 * ```
 */
export interface TopicPublishOptions {
  /** The publisher's token: topic rules (`auth.topics`) decide whether it may publish. */
  token?: string;
  /**
   * Store the message (durable topics: the mesh's store, JetStream on NATS): the promise
   * resolves once it is stored, and durable subscriptions get it at least once, also if they
   * run later. Plain subscribers get it too, live. @default {false}
   */
  durable?: boolean;
  /**
   * A durable message's id (1 to 128 characters): published again with the same id within the
   * store's duplicate window (2 minutes by default), it is stored once. Durable subscribers see
   * it as `delivery.id`. @default {a random id}
   */
  id?: string;
}

/**
 * Options of {@link System.subscribe}: a plain subscription (live, at most once; `group`
 * load-balances), or a durable one (`durable: name`, at least once; see
 * {@link DurableSubscribeOptions}).
 *
 * @example
 * ```ts
 * import type { TopicSubscribeOptions } from "@troupe/troupe";
 * const billing: TopicSubscribeOptions = { durable: "billing", from: "all", maxDeliver: 5 };
 * const live: TopicSubscribeOptions = { group: "dashboards" };
 * ```
 */
export interface TopicSubscribeOptions extends Partial<DurableSubscribeOptions> {
  /** Queue group of a plain subscription: each message to one member of the group. */
  group?: string;
  /** The subscriber's token: topic rules (`auth.topics`) decide whether it may subscribe. */
  token?: string;
}

/** A pub/sub subscription. */
export interface Subscription {
  /** The topic pattern. */
  readonly topic: string;
  /**
   * Settles once the subscription is in place: its token (if any) was allowed, the mesh knows
   * of it, and a durable subscription's consumer exists. Rejects (`forbidden`, `unauthorized`,
   * `unavailable`, `TypeError`) when it was refused: it then delivers nothing.
   */
  readonly ready: Promise<void>;
  /** Stops delivery. Idempotent. */
  unsubscribe(): void;
  /** Same as `unsubscribe()`, for `using`. */
  [Symbol.dispose](): void;
}

/** See {@link System.status}. */
export type SystemStatus = "running" | "fenced" | "closing" | "closed";

/** One node of a Troupe cluster: see {@link createSystem}. */
export interface System extends AsyncDisposable {
  /** This node's id. */
  readonly node: string;
  /**
   * This node's clock (`createSystem({ clock })`): what adapters on top of the system, such
   * as the gateway's rate limits, read time from.
   */
  readonly clock: Clock;
  /** Who is in the cluster and where actors run. */
  readonly directory: Directory;
  /**
   * Where this node is: `running`; `fenced` (its lease lapsed: it processes nothing until a
   * heartbeat gets through again); `closing` (draining after `close()`); `closed`. For
   * readiness probes.
   */
  status(): SystemStatus;
  /** This node's dynamic config: merged sources, watches, `set` (cluster-wide through `fromKv`). */
  readonly config: Config;
  /**
   * What the cluster's nodes report about themselves, asked over the mesh: per node its types,
   * activations, message rates, recent errors and leases; per actor where it runs, its seq and
   * last events. The dashboard (`./hono`) shows it.
   */
  readonly cluster: Cluster;
  /** A ref to an actor (id optional for stateless workers). */
  ref<T extends ActorTypes>(
    def: ActorDefinition<T>,
    id?: string,
    options?: RefOptions,
  ): ActorRef<T>;
  /** A ref to a stateless worker type, with options (a token). */
  ref<T extends ActorTypes>(def: ActorDefinition<T>, options: RefOptions): ActorRef<T>;
  /**
   * Which rule decides a call to `def.handler` by the holder of `token` (none: an anonymous
   * caller), as this node's auth would decide it. Rejects with `unauthorized` for a bad token.
   */
  explain<T extends ActorTypes>(
    def: ActorDefinition<T>,
    handler: string,
    options?: { id?: string; token?: string },
  ): Promise<Decision>;
  /** The actor's events, in order, from `from` (default 1). */
  history<T extends ActorTypes>(
    def: ActorDefinition<T>,
    id: string,
    options?: { from?: number },
  ): AsyncIterable<HistoryEvent<T["events"][keyof T["events"]]>>;
  /**
   * Every event of every actor of `def`'s type, in the journal's commit order (per actor in seq
   * order), from `options.after` (a position of an earlier event) on, then live ones. A
   * string that is not a position of this journal throws `TypeError` here, at the call.
   */
  feed<T extends ActorTypes>(
    def: ActorDefinition<T>,
    options?: FeedOptions,
  ): AsyncIterable<FeedEvent<T["events"][keyof T["events"]]>>;
  /**
   * Runs projection `name` (on one node of the cluster at a time): `handle` gets every event of
   * the types in `from`, in order, checkpointed; a restart or failover resumes after the last
   * checkpoint (at least once: write by key).
   */
  projection(name: string, options: ProjectionOptions): Projection;
  /**
   * Publishes to a topic (dot-separated tokens): at most once to the subscribers there now,
   * or, with `durable: true`, stored first (the promise resolves once it is) and delivered at
   * least once to durable subscriptions, also those that start later.
   *
   * @example
   * ```ts
   * import { createSystem } from "@troupe/troupe";
   * const system = await createSystem();
   * await system.publish("orders.created", { id: 1 });                      // live only
   * await system.publish("orders.created", { id: 2 }, { durable: true, id: "order-2" }); // stored
   * await system.close();
   * ```
   */
  publish(topic: string, payload: unknown, options?: TopicPublishOptions): Promise<void>;
  /**
   * Subscribes to a topic pattern (`*` one token, `>` the rest). Plain: live messages, at most
   * once; `group` load-balances. With `durable: name`: a named consumer shared by every
   * subscriber of that name and pattern on any node; messages wait for it, each is delivered
   * at least once, again while the handler throws (`backoff`), then moved to `dead.<topic>`
   * after `maxDeliver` deliveries. The handler's third argument says which delivery it is.
   *
   * @example
   * ```ts
   * import { createSystem } from "@troupe/troupe";
   * const system = await createSystem();
   * const sub = system.subscribe("orders.*", async (order, topic, delivery) => {
   *   console.log(topic, order, delivery?.attempt);     // throw to get it again later
   * }, { durable: "billing", from: "all", maxDeliver: 5 });
   * await sub.ready;                                     // the consumer exists
   * await system.publish("orders.created", { id: 1 }, { durable: true });
   * sub.unsubscribe();
   * await system.close();
   * ```
   */
  subscribe(
    topic: string,
    handler: TopicHandler,
    options?: TopicSubscribeOptions,
  ): Subscription;
  /** Acquires a lease, waiting until it is free. */
  lease(name: string, options?: LeaseOptions): Promise<Lease>;
  /** Runs `fn` holding the lease `name`. */
  lock<R>(name: string, fn: (lease: Lease) => R | Promise<R>, options?: LeaseOptions): Promise<R>;
  /** Stands in a leader election. */
  elect(name: string, options?: ElectOptions): Leader;
  /** The record store `name` (see {@link Store}); the same object on every call. */
  store<V = unknown>(name: string): Store<V>;
  /** Drains mailboxes, passivates, releases leases, disconnects. Idempotent. */
  close(): Promise<void>;
}

/** Internal hooks for the public `createSystem` in mod.ts. */
export interface SystemInternals {
  /** Opens a journal from a URL string (`now`: the node's wall clock, to date records). */
  resolveJournal?: (url: string, now: () => number) => Promise<Journal>;
}

/**
 * Starts a node. See `createSystem` in `mod.ts` for the public entry (it adds libSQL URLs).
 */
export async function createSystem(
  options: SystemOptions = {},
  internals: SystemInternals = {},
): Promise<System> {
  const cfg = nodeConfig(options);
  const clock = cfg.clock;
  let journal: Journal;
  let ownsJournal = false;
  if (cfg.journal === undefined) {
    journal = memoryJournal({ now: clock.now });
    ownsJournal = true;
  } else if (typeof cfg.journal === "string") {
    if (cfg.journal === ":memory:" && !internals.resolveJournal) {
      journal = memoryJournal({ now: clock.now });
    } else if (!internals.resolveJournal) {
      throw new TypeError(
        `A journal URL ("${cfg.journal}") needs the libSQL adapter: import createSystem from the package root, or pass libsqlJournal({ url })`,
      );
    } else journal = await internals.resolveJournal(cfg.journal, clock.now);
    ownsJournal = true;
  } else journal = cfg.journal;
  const mesh = cfg.mesh ?? inProcessMesh({ clock });
  let conn: MeshConnection | undefined;
  let config: ManagedConfig | undefined;
  try {
    conn = await mesh.connect({ node: cfg.node, clock });
    config = await createConfig(cfg.config, {
      node: cfg.node,
      logger: cfg.log,
      mesh: conn,
      prefix: mesh.prefix,
      clock,
    });
    const system = new SystemImpl(cfg, {
      journal,
      ownsJournal,
      prefix: mesh.prefix,
      leaseTtl: cfg.leaseTtl ?? mesh.leaseTtl,
      conn,
      config,
    });
    await system.start();
    return system;
  } catch (err) {
    await config?.close().catch(() => {});
    await conn?.close().catch(() => {});
    if (ownsJournal) await journal.close().catch(() => {});
    throw err;
  }
}

/** What `createSystem` opened for a node. */
interface Opened {
  readonly journal: Journal;
  /** Whether the node closes the journal (it opened it). */
  readonly ownsJournal: boolean;
  /** The mesh's subject prefix. */
  readonly prefix: string;
  /** Membership/ownership lease time to live, ms. */
  readonly leaseTtl: number;
  readonly conn: MeshConnection;
  readonly config: ManagedConfig;
}

/** A node: wiring (membership, ownership, leases, the message path, reminders) and lifecycle. */
class SystemImpl implements System {
  readonly node: string;
  readonly directory: Directory;
  readonly config: ManagedConfig;
  readonly cluster: Cluster;
  readonly #cfg: NodeConfig;
  readonly #opened: Opened;
  readonly #observer: NodeObserver;
  #observing: Responder | undefined;
  readonly #storage: Codec = msgpack;
  readonly clock: Clock;
  readonly #wheel: TimerWheel;
  #membership!: Membership;
  #ownership!: Ownership;
  #leases!: Leases;
  #dispatch!: Dispatch;
  #reminders: Reminders | undefined;
  #outbox: Outbox | undefined;
  readonly #projections = new Set<Projection>();
  /** Aborted when `close()` starts: feeds end. */
  readonly #closed = new AbortController();
  #closing: Promise<void> | undefined;
  readonly #stores: Stores;

  constructor(cfg: NodeConfig, opened: Opened) {
    this.node = cfg.node;
    this.clock = cfg.clock;
    this.#wheel = new TimerWheel(cfg.clock, 5);
    this.config = opened.config;
    this.#cfg = cfg;
    this.#opened = opened;
    this.#stores = new Stores({
      ...(cfg.store ? { backend: cfg.store } : {}),
      journal: opened.journal,
      codec: this.#storage,
      maxPayload: cfg.maxPayload,
      onError: (msg, err) => cfg.log.warn(msg, { err }),
      clock: cfg.clock,
    });
    this.directory = directoryView({
      nodes: () => this.#membership.nodes(),
      locate: (type, id) => this.#dispatch.locate(type, id),
      watches: () => [this.#membership.watch(), this.#dispatch.activations.watch()],
    });
    this.#observer = new NodeObserver(cfg.node, () => this.#dispatch?.activity() ?? [], {
      clock: cfg.clock,
    });
    this.cluster = clusterClient({
      prefix: opened.prefix,
      conn: opened.conn,
      nodes: () => this.#membership.nodes(),
      hostsOf: (type) => this.#membership.hostsOf(type),
      locate: (type, id) => this.#dispatch.locate(type, id),
      clock: cfg.clock,
    });
  }

  async start(): Promise<void> {
    const cfg = this.#cfg;
    const { conn, prefix, journal } = this.#opened;
    const info: NodeInfo = { id: this.node, types: [...cfg.defs.keys()], since: cfg.clock.now() };
    this.#membership = await startMembership(conn, {
      prefix,
      node: info,
      ttl: this.#opened.leaseTtl,
      onWarning: (m) => cfg.log.warn(m),
      clock: cfg.clock,
    });
    this.#ownership = createOwnership(this.#membership, { journal });
    this.#leases = await createLeases(conn, this.#membership, { prefix, node: this.node });
    this.#dispatch = new Dispatch({
      node: this.node,
      prefix,
      conn,
      membership: this.#membership,
      ownership: this.#ownership,
      journal: measuredJournal(journal, this.#observer),
      storage: this.#storage,
      wireCodec: cfg.wireCodec,
      log: cfg.log,
      clock: cfg.clock,
      wheel: this.#wheel,
      observer: this.#observer,
      // never above what the mesh connection can carry
      maxPayload: Math.min(cfg.maxPayload, conn.maxPayload),
      askTimeout: cfg.askTimeout,
      maxActivations: cfg.maxActivations,
      auth: cfg.auth,
      replyPrefixes: cfg.replyPrefixes,
      defs: cfg.defs,
      reminderScheduled: (due) => this.#reminders?.scheduled(due),
      forwardOutbox: (actor, messages) => this.#outbox?.forward(actor, messages),
      configView: () => this.config.view(),
    });
    await this.#dispatch.start();
    this.#observing = this.#serveObservation();
    if (cfg.reminders && cfg.defs.size > 0) {
      const auth = cfg.auth;
      this.#reminders = new Reminders({
        journal,
        storage: this.#storage,
        dispatcher: this.#dispatch,
        log: cfg.log,
        prefix,
        clock: cfg.clock,
        elect: (name, o) => this.#electInternal(name, o),
        ...(auth ? { delegate: (caller, from) => auth.verifier.delegate(caller, from) } : {}),
      });
      this.#reminders.start();
    }
    if (cfg.defs.size > 0) {
      this.#outbox = new Outbox({
        journal,
        log: cfg.log,
        prefix,
        clock: cfg.clock,
        publish: this.#dispatch.durablePublish(),
        elect: (name, o) => this.#electInternal(name, o),
      });
      this.#outbox.start();
    }
  }

  /** Answers `system.cluster` and NATS service discovery for this node. */
  #serveObservation(): Responder {
    const cfg = this.#cfg;
    const s = subjects(this.#opened.prefix);
    return serveObservation({
      micro: cfg.serviceDiscovery,
      prefix: this.#opened.prefix,
      conn: this.#opened.conn,
      observer: this.#observer,
      journal: this.#opened.journal,
      log: cfg.log,
      info: () => this.#membership.self,
      stateless: (type) => cfg.defs.get(type)?.stateless === true,
      status: () => this.status(),
      leases: () => this.#leases.holding().map((l) => ({ name: l.name, token: l.token })),
      active: (type, id) => this.#dispatch.activeActor(type, id),
      history: (type, id, from) => {
        const def = cfg.defs.get(type);
        return def ? this.history(def, id, { from }) : undefined;
      },
      replyAllowed: (subject) => isReplySubject(subject, cfg.replyPrefixes),
      endpoint: (type) =>
        cfg.defs.get(type)?.stateless
          ? { subject: s.worker(type), queueGroup: s.workerGroup(type) }
          : { subject: s.hosted(this.node, type) },
    });
  }

  // ---- public API ----

  status(): SystemStatus {
    if (this.#closing) return this.#dispatch.phase === "closed" ? "closed" : "closing";
    return this.#membership.isFenced() ? "fenced" : "running";
  }

  ref<T extends ActorTypes>(
    def: ActorDefinition<T>,
    idOrOptions: string | RefOptions = "",
    options?: RefOptions,
  ): ActorRef<T> {
    if (!def || typeof def.name !== "string") {
      throw new TypeError("system.ref() expects a definition from defineActor()");
    }
    const id = typeof idOrOptions === "string" ? idOrOptions : "";
    const opts = typeof idOrOptions === "string" ? options : idOrOptions;
    if (!def.stateless && id === "") {
      throw new TypeError(
        `system.ref(${def.name}) needs an id (only stateless workers go without)`,
      );
    }
    return makeRef(this.#dispatch, def, id, undefined, opts);
  }

  explain<T extends ActorTypes>(
    def: ActorDefinition<T>,
    handler: string,
    options: { id?: string; token?: string } = {},
  ): Promise<Decision> {
    const any = def as unknown as ActorDefinition<AnyActorTypes>;
    return this.#dispatch.explain(any, handler, options);
  }

  history<T extends ActorTypes>(
    def: ActorDefinition<T>,
    id: string,
    options: { from?: number } = {},
  ): AsyncIterable<HistoryEvent<T["events"][keyof T["events"]]>> {
    return readHistory(this.#opened.journal, `${def.name}/${id}`, def, {
      ...(options.from !== undefined ? { from: options.from } : {}),
      decode: (data) => this.#storage.decode(data),
      closed: () => this.#dispatch.phase === "closed",
    }) as AsyncIterable<HistoryEvent<T["events"][keyof T["events"]]>>;
  }

  feed<T extends ActorTypes>(
    def: ActorDefinition<T>,
    options: FeedOptions = {},
  ): AsyncIterable<FeedEvent<T["events"][keyof T["events"]]>> {
    if (!def || typeof def.name !== "string") {
      throw new TypeError("system.feed() expects a definition from defineActor()");
    }
    parsePosition(options.after, this.#opened.journal.shards); // a bad position throws now
    // A feed ends with its system: closing aborts its signal.
    const signal = options.signal
      ? AbortSignal.any([options.signal, this.#closed.signal])
      : this.#closed.signal;
    return readFeed(this.#opened.journal, this.#storage, [def], {
      ...options,
      signal,
      clock: this.clock,
    }) as AsyncIterable<
      FeedEvent<T["events"][keyof T["events"]]>
    >;
  }

  projection(name: string, options: ProjectionOptions): Projection {
    if (this.#closing) throw new ClosedError("The system is closed");
    const p = startProjection(
      {
        journal: this.#opened.journal,
        storage: this.#storage,
        log: this.#cfg.log,
        clock: this.clock,
        checkpoints: this.store<string>("troupe-projections"),
        elect: (n, o) => this.#electInternal(n, o),
        observe: (g) => this.#observer.projection(g),
      },
      name,
      options,
    );
    this.#projections.add(p);
    return p;
  }

  publish(topic: string, payload: unknown, options: TopicPublishOptions = {}): Promise<void> {
    if (!options.durable) {
      if (options.id !== undefined) {
        return Promise.reject(
          new TypeError("publish(): `id` is for durable messages (`durable: true`)"),
        );
      }
      return this.#dispatch.publish(topic, payload, options.token);
    }
    return this.#dispatch.publishDurable(topic, payload, options.id, options.token);
  }

  subscribe(
    topic: string,
    handler: TopicHandler,
    options: TopicSubscribeOptions = {},
  ): Subscription {
    return this.#dispatch.subscribe(topic, handler, options);
  }

  lease(name: string, options?: LeaseOptions): Promise<Lease> {
    if (this.#closing) return Promise.reject(new ClosedError("The system is closed"));
    return this.#leases.lease(name, options);
  }

  lock<R>(name: string, fn: (lease: Lease) => R | Promise<R>, options?: LeaseOptions): Promise<R> {
    if (this.#closing) return Promise.reject(new ClosedError("The system is closed"));
    return this.#leases.lock(name, fn, options);
  }

  /**
   * An election of the runtime's own (reminder firing, outbox sweeping, projections): its lease
   * lives as long as the node's (`leaseTtl`), so it moves to another node as soon as the dead
   * node's actors do, not after the 5 s default of a user's `elect()`.
   */
  #electInternal(name: string, options: ElectOptions): Leader {
    return this.#leases.elect(name, { ttl: this.#opened.leaseTtl, ...options });
  }

  elect(name: string, options: ElectOptions = {}): Leader {
    if (this.#closing) throw new ClosedError("The system is closed");
    return this.#leases.elect(name, options);
  }

  store<V = unknown>(name: string): Store<V> {
    return this.#stores.open<V>(name);
  }

  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  /**
   * Shutdown, in an order that loses nothing: stop firing reminders; drain (remote requests
   * are answered "send it elsewhere", mailboxes and worker pools finish what they took, bounded
   * by `drainTimeout`); then release leases and ownership and leave the membership, so callers
   * re-place at once; then unsubscribe and disconnect.
   */
  async #close(): Promise<void> {
    const bound = this.#cfg.drainTimeout;
    const log = this.#cfg.log;
    this.#closed.abort();
    await Promise.allSettled([...this.#projections].map((p) => p.stop()));
    await this.#reminders?.stop();
    await this.#outbox?.stop();
    await this.#dispatch.drain(bound);
    await this.#leases.close().catch((err) => log.warn("Lease release failed", { err }));
    this.#ownership.close();
    await this.#membership.close().catch(() => {});
    await this.#dispatch.close(bound);
    await this.#observing?.close();
    this.#wheel.close();
    await this.config.close().catch((err) => log.warn("Config close failed", { err }));
    await this.#opened.conn.close().catch(() => {});
    await this.#stores.close();
    if (this.#opened.ownsJournal) await this.#opened.journal.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
