/**
 * `createSystem`: one node of a Troupe cluster. It wires the mesh (routing, membership,
 * ownership, leases), the journal and the hosted actor types, and owns their lifecycle.
 *
 * @module
 */

import type { ActorDefinition, ActorTypes, AnyActorTypes } from "./actor/define.ts";
import { consoleLogger, type Logger, type LogLevel } from "./actor/envelope.ts";
import { type ActorRef, makeRef, type RefOptions } from "./actor/ref.ts";
import { upcast } from "./actor/activation.ts";
import { Reminders } from "./actor/reminders.ts";
import { codecFor, DEFAULT_MAX_PAYLOAD, json, msgpack } from "./codec/mod.ts";
import { Stores } from "./store/store.ts";
import type { Store, StoreBackend } from "./store/types.ts";
import type { Codec } from "./codec/types.ts";
import { createLeases, type Leases } from "./directory/leases.ts";
import { type Membership, startMembership } from "./directory/membership.ts";
import { createOwnership, type Ownership } from "./directory/ownership.ts";
import type {
  DirectoryEvent,
  ElectOptions,
  Leader,
  Lease,
  LeaseOptions,
  NodeInfo,
} from "./directory/types.ts";
import { createConfig, type ManagedConfig } from "./config/config.ts";
import type { Config, ConfigOptions } from "./config/types.ts";
import { Dispatch } from "./dispatch/dispatch.ts";
import { DEFAULT_REPLY_PREFIXES, isReplySubject, subjects } from "./dispatch/subjects.ts";
import { type Cluster, clusterClient } from "./observe/cluster.ts";
import type { Responder } from "./observe/control.ts";
import { measuredJournal } from "./observe/journal.ts";
import { activity, NodeObserver } from "./observe/node.ts";
import { serveObservation } from "./observe/serve.ts";
import { allows, decide, type Decision, type SystemRule, type TopicRule } from "./auth/access.ts";
import { type AuthOptions, createVerifier, type Verifier } from "./auth/verify.ts";
import { subjectMatches } from "./mesh/subject.ts";
import { ClosedError, ForbiddenError } from "./errors.ts";
import type { Journal } from "./journal/types.ts";
import { memoryJournal } from "./journal/memory.ts";
import { inProcessMesh } from "./mesh/in_process.ts";
import type { Mesh, MeshConnection } from "./mesh/types.ts";
import { TimerWheel } from "./util/async.ts";
import { type Clock, systemClock, type TimerId } from "./util/clock.ts";
import { createEventQueue } from "./util/queue.ts";

/** Options of {@link createSystem}. */
export interface SystemOptions {
  /** Actor types this node hosts (empty: a client node). @default {[]} */
  // deno-lint-ignore no-explicit-any
  actors?: readonly ActorDefinition<any>[];
  /**
   * Where events live: a libSQL URL (`file:`, `:memory:`, `libsql://`, `http(s)://`) or a
   * {@link Journal}. @default {an in-memory journal: state lasts as long as the process}
   */
  journal?: string | Journal;
  /** The mesh. @default {a private in-process mesh: a one-node cluster} */
  mesh?: Mesh;
  /** This node's id. @default {a random unique id} */
  node?: string;
  /** A logger, or the level for the console logger. @default {"warn"} */
  logger?: Logger | LogLevel;
  /** Largest encoded payload accepted or sent, bytes. @default {1048576} */
  maxPayload?: number;
  /** Content type of messages this node sends. @default {"application/msgpack"} */
  contentType?: string;
  /** Default ask timeout, ms. @default {30000} */
  askTimeout?: number;
  /** Membership/ownership lease time to live, ms. @default {the mesh's leaseTtl} */
  leaseTtl?: number;
  /** Whether this node runs the durable reminder service (when elected). @default {true} */
  reminders?: boolean;
  /**
   * Most actors active on this node at once. Past it, the least recently used idle ones
   * passivate to make room; when none is idle, new activations get `overloaded`.
   * @default {100000}
   */
  maxActivations?: number;
  /**
   * Bound of a graceful `close()`, ms: mailboxes and worker pools drain for at most this long,
   * then what is left is answered "send it elsewhere" and turns still running are abandoned.
   * @default {10000}
   */
  drainTimeout?: number;
  /**
   * Where `system.store(name)` keeps records. @default {the journal's database when the
   * journal offers one (a libSQL journal: URL or object), else memory shared by the systems
   * given the same journal object}
   */
  store?: StoreBackend;
  /** Dynamic config: sources, defaults, `validate`, secrets (see `system.config`). @default {{}} */
  config?: ConfigOptions;
  /**
   * Identities and access rules: how callers' tokens (JWTs) are verified, and system-wide
   * rules. With it, every handler needs an allowed caller (`access` in `defineActor`;
   * `"authenticated"` for types without one). @default {no auth: tokens are not checked, and
   * types that declare `access` cannot be hosted}
   */
  auth?: AuthOptions;
  /**
   * Inbox prefixes this node publishes replies and stream frames to: the first token of a
   * caller's reply subject must start with one of them (`$…` and Troupe subjects never pass).
   * Add your clients' `inboxPrefix`es if they do not start with `_INBOX`. @default {["_INBOX"]}
   */
  replyPrefixes?: readonly string[];
  /**
   * Answer NATS service discovery (`$SRV.PING|INFO|STATS`) as service `troupe`, so that
   * `nats micro ls troupe` lists this node (docs/operating.md). @default {true}
   */
  serviceDiscovery?: boolean;
  /**
   * Where this node reads time and sets timers: call deadlines, idle passivation, reminders,
   * membership and lease timing, config debounce, store TTLs and the purge, stream and drain
   * bounds. Tests pass `virtualClock()` from `./testing` and move time with `advance(ms)`.
   * The NATS client's own timers (pings, reconnects, request timeouts on the wire) and the
   * libSQL journal's lock waits stay on real time: they follow a real network and disk.
   * @default {systemClock: the host's time}
   */
  clock?: Clock;
}

/** An event read back from an actor's log. */
export interface HistoryEvent<E = unknown> {
  /** Position in the log. */
  readonly seq: number;
  /** Event type. */
  readonly type: string;
  /** Payload, upcast to the current version. */
  readonly payload: E;
  /** When it was appended. */
  readonly at: Date;
}

/** A pub/sub subscription. */
export interface Subscription {
  /** The topic pattern. */
  readonly topic: string;
  /** Stops delivery. Idempotent. */
  unsubscribe(): void;
  /** Same as `unsubscribe()`, for `using`. */
  [Symbol.dispose](): void;
}

/** See {@link System.status}. */
export type SystemStatus = "running" | "fenced" | "closing" | "closed";

/** Who is in the cluster and what runs where. */
export interface Directory {
  /** Live nodes. */
  nodes(): NodeInfo[];
  /** The node hosting an actor now, or undefined. */
  locate<T extends ActorTypes>(def: ActorDefinition<T>, id: string): Promise<string | undefined>;
  /** Node joins/leaves and activations. Break out of the loop to stop. */
  watch(): AsyncIterable<DirectoryEvent>;
}

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
  /** Publishes to a topic (dot-separated tokens). */
  publish(topic: string, payload: unknown, options?: { token?: string }): Promise<void>;
  /** Subscribes to a topic pattern (`*` one token, `>` the rest); `group` load-balances. */
  subscribe(
    topic: string,
    handler: (payload: unknown, topic: string) => void | Promise<void>,
    options?: { group?: string; token?: string },
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

const TYPE_NAME = /^[a-z][a-z0-9_-]*$/;

/**
 * Starts a node. See `createSystem` in `mod.ts` for the public entry (it adds libSQL URLs).
 */
export async function createSystem(
  options: SystemOptions = {},
  internals: SystemInternals = {},
): Promise<System> {
  const node = options.node ?? `node-${crypto.randomUUID().slice(0, 8)}`;
  if (!/^[A-Za-z0-9_-]+$/.test(node)) {
    throw new TypeError(`Node id must match /^[A-Za-z0-9_-]+$/, got "${node}"`);
  }
  const log = typeof options.logger === "object"
    ? options.logger
    : consoleLogger(options.logger ?? "warn", node);
  const clock = options.clock ?? systemClock;
  let journal: Journal;
  let ownsJournal = false;
  if (options.journal === undefined) {
    journal = memoryJournal({ now: clock.now });
    ownsJournal = true;
  } else if (typeof options.journal === "string") {
    if (options.journal === ":memory:" && !internals.resolveJournal) {
      journal = memoryJournal({ now: clock.now });
    } else if (!internals.resolveJournal) {
      throw new TypeError(
        `A journal URL ("${options.journal}") needs the libSQL adapter: import createSystem from the package root, or pass libsqlJournal({ url })`,
      );
    } else journal = await internals.resolveJournal(options.journal, clock.now);
    ownsJournal = true;
  } else journal = options.journal;
  const mesh = options.mesh ?? inProcessMesh({ clock });
  let conn: MeshConnection | undefined;
  let config: ManagedConfig | undefined;
  try {
    conn = await mesh.connect({ node, clock });
    config = await createConfig(options.config, {
      node,
      logger: log,
      mesh: conn,
      prefix: mesh.prefix,
      clock,
    });
    const system = new SystemImpl(
      node,
      options,
      log,
      clock,
      journal,
      ownsJournal,
      mesh,
      conn,
      config,
    );
    await system.start();
    return system;
  } catch (err) {
    await config?.close().catch(() => {});
    await conn?.close().catch(() => {});
    if (ownsJournal) await journal.close().catch(() => {});
    throw err;
  }
}

/** A node: wiring (membership, ownership, leases, the message path, reminders) and lifecycle. */
class SystemImpl implements System {
  readonly node: string;
  readonly directory: Directory;
  readonly config: ManagedConfig;
  readonly cluster: Cluster;
  readonly #observer: NodeObserver;
  #observing: Responder | undefined;
  readonly #log: Logger;
  readonly #journal: Journal;
  readonly #storage: Codec = msgpack;
  readonly clock: Clock;
  readonly #wheel: TimerWheel;
  readonly #defs = new Map<string, ActorDefinition<AnyActorTypes>>();
  readonly #conn: MeshConnection;
  readonly #prefix: string;
  readonly #ttl: number;
  readonly #ownsJournal: boolean;
  readonly #options: SystemOptions;
  #membership!: Membership;
  #ownership!: Ownership;
  #leases!: Leases;
  #dispatch!: Dispatch;
  #reminders: Reminders | undefined;
  #closing: Promise<void> | undefined;
  readonly #auth:
    | { verifier: Verifier; rules: readonly SystemRule[]; topics: readonly TopicRule[] }
    | undefined;
  #idleTimer: TimerId | undefined;
  #unfence: (() => void) | undefined;
  readonly #stores: Stores;

  constructor(
    node: string,
    options: SystemOptions,
    log: Logger,
    clock: Clock,
    journal: Journal,
    ownsJournal: boolean,
    mesh: Mesh,
    conn: MeshConnection,
    config: ManagedConfig,
  ) {
    this.node = node;
    this.config = config;
    this.#log = log;
    this.clock = clock;
    this.#wheel = new TimerWheel(clock, 5);
    this.#journal = journal;
    this.#ownsJournal = ownsJournal;
    this.#options = options;
    this.#conn = conn;
    this.#prefix = mesh.prefix;
    this.#stores = new Stores({
      ...(options.store ? { backend: options.store } : {}),
      journal,
      codec: this.#storage,
      maxPayload: options.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      clock,
      onError: (msg, err) => log.warn(msg, { err }),
    });
    this.#ttl = options.leaseTtl ?? mesh.leaseTtl;
    for (const def of options.actors ?? []) {
      if (!def || typeof def.name !== "string" || !TYPE_NAME.test(def.name) || !def.handlers) {
        throw new TypeError("createSystem(): every entry of `actors` must come from defineActor()");
      }
      if (this.#defs.has(def.name)) {
        throw new TypeError(`createSystem(): actor type "${def.name}" is listed twice`);
      }
      if (def.access && !options.auth) {
        throw new TypeError(
          `createSystem(): actor type "${def.name}" declares access rules, so the node needs auth`,
        );
      }
      this.#defs.set(def.name, def);
    }
    this.#auth = options.auth && {
      verifier: createVerifier(options.auth, clock),
      rules: options.auth.rules ?? [],
      topics: options.auth.topics ?? [],
    };
    this.directory = {
      nodes: () => this.#membership.nodes(),
      locate: (def, id) => this.#dispatch.locate(def.name, id),
      watch: (): AsyncIterable<DirectoryEvent> => this.#watch(),
    };
    this.#observer = new NodeObserver(
      node,
      () => activity(this.#dispatch?.local, this.#defs.keys()),
      { clock },
    );
    this.cluster = clusterClient({
      prefix: this.#prefix,
      conn,
      nodes: () => this.#membership.nodes(),
      hostsOf: (type) => this.#membership.hostsOf(type),
      locate: (type, id) => this.#dispatch.locate(type, id),
      clock,
    });
  }

  async start(): Promise<void> {
    const options = this.#options;
    const ct = options.contentType ?? msgpack.contentType;
    const wireCodec = codecFor(ct);
    if (!wireCodec) throw new TypeError(`No codec for content type "${ct}"`);
    const maxActivations = options.maxActivations ?? 100_000;
    if (!(maxActivations >= 1)) {
      throw new RangeError(`maxActivations must be at least 1, got ${maxActivations}`);
    }
    const clock = this.clock;
    const info: NodeInfo = { id: this.node, types: [...this.#defs.keys()], since: clock.now() };
    this.#membership = await startMembership(this.#conn, {
      prefix: this.#prefix,
      node: info,
      ttl: this.#ttl,
      onWarning: (m) => this.#log.warn(m),
      clock,
    });
    this.#ownership = createOwnership(this.#membership, { journal: this.#journal });
    this.#leases = await createLeases(this.#conn, this.#membership, {
      prefix: this.#prefix,
      node: this.node,
    });
    this.#dispatch = new Dispatch({
      node: this.node,
      prefix: this.#prefix,
      conn: this.#conn,
      membership: this.#membership,
      ownership: this.#ownership,
      journal: measuredJournal(this.#journal, this.#observer),
      storage: this.#storage,
      wireCodec,
      log: this.#log,
      clock,
      wheel: this.#wheel,
      observer: this.#observer,
      maxPayload: maxPayloadOf(options.maxPayload, this.#conn),
      askTimeout: options.askTimeout ?? 30_000,
      maxActivations,
      auth: this.#auth,
      replyPrefixes: options.replyPrefixes ?? DEFAULT_REPLY_PREFIXES,
      defs: this.#defs,
      reminderScheduled: (due) => this.#reminders?.scheduled(due),
      configView: () => this.config.view(),
    });
    this.#unfence = this.#membership.on((e) => {
      if (e.type === "fenced") {
        this.#log.warn("Node lost its lease: dropping its activations", { reason: e.reason });
        this.#dispatch.local.dropAll();
      }
    });
    await this.#dispatch.start();
    this.#observing = this.#serveObservation();
    const idle = Math.min(...[...this.#defs.values()].map((d) => d.idleAfter), 60_000);
    this.#idleTimer = clock.setInterval(
      () => this.#dispatch.local.sweepIdle(),
      Math.max(10, Math.min(1000, idle / 2)),
    );
    if (options.reminders !== false && this.#defs.size > 0) {
      this.#reminders = new Reminders({
        journal: this.#journal,
        storage: this.#storage,
        dispatcher: this.#dispatch,
        log: this.#log,
        prefix: this.#prefix,
        clock,
        elect: (name, o) => this.#leases.elect(name, o),
        ...(this.#auth
          ? { delegate: (caller, from) => this.#auth!.verifier.delegate(caller, from) }
          : {}),
      });
      this.#reminders.start();
    }
  }

  /** Answers `system.cluster` and NATS service discovery for this node. */
  #serveObservation(): Responder {
    const s = subjects(this.#prefix);
    const replyPrefixes = this.#options.replyPrefixes ?? DEFAULT_REPLY_PREFIXES;
    return serveObservation({
      micro: this.#options.serviceDiscovery !== false,
      prefix: this.#prefix,
      conn: this.#conn,
      observer: this.#observer,
      journal: this.#journal,
      log: this.#log,
      info: () => this.#membership.self,
      stateless: (type) => this.#defs.get(type)?.stateless === true,
      status: () => this.status(),
      leases: () => this.#leases.holding().map((l) => ({ name: l.name, token: l.token })),
      active: (type, id) => {
        const act = this.#dispatch.local.activations.get(`${type}/${id}`);
        return act?.status === "active" ? { seq: act.seq, queued: act.queued } : undefined;
      },
      history: (type, id, from) => {
        const def = this.#defs.get(type);
        return def ? this.history(def, id, { from }) : undefined;
      },
      replyAllowed: (subject) => isReplySubject(subject, replyPrefixes),
      endpoint: (type) =>
        this.#defs.get(type)?.stateless
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

  async explain<T extends ActorTypes>(
    def: ActorDefinition<T>,
    handler: string,
    options: { id?: string; token?: string } = {},
  ): Promise<Decision> {
    const auth = this.#auth;
    if (!auth) return { allowed: true, by: "no auth on this node" };
    const caller = options.token === undefined
      ? undefined
      : await auth.verifier.verify(options.token);
    return decide(def.name, handler, options.id ?? "", caller, def.access, auth.rules);
  }

  async *history<T extends ActorTypes>(
    def: ActorDefinition<T>,
    id: string,
    options: { from?: number } = {},
  ): AsyncIterable<HistoryEvent<T["events"][keyof T["events"]]>> {
    const key = `${def.name}/${id}`;
    let next = Math.max(1, options.from ?? 1);
    for (;;) {
      if (this.#dispatch.phase === "closed") throw new ClosedError("The system is closed");
      const page = await this.#journal.read(key, next, 500);
      for (const e of page) {
        const payload = upcast(
          def as unknown as ActorDefinition<AnyActorTypes>,
          e.type,
          e.version,
          this.#storage.decode(e.data),
        ) as T["events"][keyof T["events"]];
        yield { seq: e.seq, type: e.type, payload, at: new Date(e.at) };
      }
      if (page.length < 500) return;
      next = page[page.length - 1]!.seq + 1;
    }
  }

  async publish(topic: string, payload: unknown, options: { token?: string } = {}): Promise<void> {
    if (options.token !== undefined) await this.#topicAllowed(topic, "publish", options.token);
    return this.#dispatch.publish(topic, payload);
  }

  subscribe(
    topic: string,
    handler: (payload: unknown, topic: string) => void | Promise<void>,
    options: { group?: string; token?: string } = {},
  ): Subscription {
    const token = options.token;
    if (token === undefined || !this.#auth) {
      return this.#dispatch.subscribe(topic, handler, options.group);
    }
    // Nothing is delivered before the token is verified and a topic rule allows it.
    let allowed = false;
    const sub = this.#dispatch.subscribe(topic, (payload, name) => {
      if (allowed) return handler(payload, name);
    }, options.group);
    this.#topicAllowed(topic, "subscribe", token).then(() => allowed = true, (err) => {
      this.#log.warn(`Subscription to "${topic}" refused`, { error: String(err) });
      sub.unsubscribe();
    });
    return sub;
  }

  /** Throws `unauthorized`/`forbidden` unless the token's holder may use `topic` this way. */
  async #topicAllowed(topic: string, action: "publish" | "subscribe", token: string) {
    const auth = this.#auth;
    if (!auth) return; // no auth: tokens are not checked
    const caller = await auth.verifier.verify(token);
    const rule = auth.topics.find((r) => subjectMatches(r.topic, topic));
    if (!rule || !allows(rule[action] ?? "deny", caller, topic)) {
      throw new ForbiddenError(`Caller "${caller.sub}" may not ${action} "${topic}"`);
    }
  }

  lease(name: string, options?: LeaseOptions): Promise<Lease> {
    if (this.#closing) return Promise.reject(new ClosedError("The system is closed"));
    return this.#leases.lease(name, options);
  }

  lock<R>(name: string, fn: (lease: Lease) => R | Promise<R>, options?: LeaseOptions): Promise<R> {
    if (this.#closing) return Promise.reject(new ClosedError("The system is closed"));
    return this.#leases.lock(name, fn, options);
  }

  elect(name: string, options: ElectOptions = {}): Leader {
    if (this.#closing) throw new ClosedError("The system is closed");
    return this.#leases.elect(name, options);
  }

  store<V = unknown>(name: string): Store<V> {
    return this.#stores.open<V>(name);
  }

  #watch(): AsyncIterable<DirectoryEvent> {
    const queue = createEventQueue<DirectoryEvent>();
    const sources = [this.#membership.watch(), this.#dispatch.activations.watch()];
    let ended = 0;
    for (const source of sources) {
      void (async () => {
        for await (const e of source) queue.push(e);
        if (++ended === sources.length) queue.stop();
      })();
    }
    queue.onStop(() => sources.forEach((w) => w.stop()));
    return queue;
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
    const bound = this.#options.drainTimeout ?? 10_000;
    this.clock.clearInterval(this.#idleTimer);
    await this.#reminders?.stop();
    await this.#dispatch.drain(bound);
    this.#unfence?.();
    await this.#leases.close().catch((err) => this.#log.warn("Lease release failed", { err }));
    this.#ownership.close();
    await this.#membership.close().catch(() => {});
    await this.#dispatch.close(bound);
    await this.#observing?.close();
    this.#wheel.close();
    await this.config.close().catch((err) => this.#log.warn("Config close failed", { err }));
    await this.#conn.close().catch(() => {});
    await this.#stores.close();
    if (this.#ownsJournal) await this.#journal.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The payload limit: the option, never above what the mesh connection can carry. */
function maxPayloadOf(option: number | undefined, conn: MeshConnection): number {
  const limit = option ?? DEFAULT_MAX_PAYLOAD;
  if (!(limit > 0)) throw new RangeError(`maxPayload must be positive, got ${limit}`);
  return Math.min(limit, conn.maxPayload);
}

export { json, msgpack };
