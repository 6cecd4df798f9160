/**
 * `createSystem`: one node of a Troupe cluster. It wires the mesh (routing, membership,
 * ownership, leases), the journal and the hosted actor types, and owns their lifecycle.
 *
 * @module
 */

import { type Activation, type ActivationHost, Redirect, upcast } from "./actor/activation.ts";
import { Activation as ActivationImpl } from "./actor/activation.ts";
import type { ActorDefinition, ActorTypes, AnyActorTypes } from "./actor/define.ts";
import { consoleLogger, type Envelope, type Logger, type LogLevel } from "./actor/envelope.ts";
import {
  type ActorRef,
  type ActorStream,
  type AskOptions,
  type CallOrigin,
  type Dispatcher,
  makeRef,
  type StreamOptions,
} from "./actor/ref.ts";
import { StreamChannel } from "./actor/stream.ts";
import { WorkerPool } from "./actor/worker.ts";
import { codecFor, DEFAULT_MAX_PAYLOAD, json, msgpack } from "./codec/mod.ts";
import type { Codec } from "./codec/types.ts";
import { sizeLowerBound } from "./codec/size.ts";
import { createLeases, type Leases } from "./directory/leases.ts";
import { type Membership, startMembership } from "./directory/membership.ts";
import { createEventQueue } from "./util/queue.ts";
import { createOwnership, type Ownership } from "./directory/ownership.ts";
import type {
  DirectoryEvent,
  ElectOptions,
  Leader,
  Lease,
  LeaseOptions,
  NodeInfo,
} from "./directory/types.ts";
import {
  BadPayloadError,
  ClosedError,
  TimeoutError,
  UnknownActorTypeError,
  UnknownHandlerError,
} from "./errors.ts";
import type { Journal } from "./journal/types.ts";
import { memoryJournal } from "./journal/memory.ts";
import { inProcessMesh } from "./mesh/in_process.ts";
import type { Mesh, MeshConnection } from "./mesh/types.ts";
import { Router } from "./mesh/router.ts";
import { Reminders } from "./actor/reminders.ts";
import { TimerWheel } from "./util/async.ts";

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
  /** Who is in the cluster and where actors run. */
  readonly directory: Directory;
  /** A ref to an actor (id optional for stateless workers). */
  ref<T extends ActorTypes>(def: ActorDefinition<T>, id?: string): ActorRef<T>;
  /** The actor's events, in order, from `from` (default 1). */
  history<T extends ActorTypes>(
    def: ActorDefinition<T>,
    id: string,
    options?: { from?: number },
  ): AsyncIterable<HistoryEvent<T["events"][keyof T["events"]]>>;
  /** Publishes to a topic (dot-separated tokens). */
  publish(topic: string, payload: unknown): Promise<void>;
  /** Subscribes to a topic pattern (`*` one token, `>` the rest); `group` load-balances. */
  subscribe(
    topic: string,
    handler: (payload: unknown, topic: string) => void | Promise<void>,
    options?: { group?: string },
  ): Subscription;
  /** Acquires a lease, waiting until it is free. */
  lease(name: string, options?: LeaseOptions): Promise<Lease>;
  /** Runs `fn` holding the lease `name`. */
  lock<R>(name: string, fn: (lease: Lease) => R | Promise<R>, options?: LeaseOptions): Promise<R>;
  /** Stands in a leader election. */
  elect(name: string, options?: ElectOptions): Leader;
  /** Drains mailboxes, passivates, releases leases, disconnects. Idempotent. */
  close(): Promise<void>;
}

/** Internal hooks for the public `createSystem` in mod.ts. */
export interface SystemInternals {
  /** Opens a journal from a URL string. */
  resolveJournal?: (url: string) => Promise<Journal>;
}

const TYPE_NAME = /^[a-z][a-z0-9_-]*$/;

/** The envelope fields a message inherits from the turn that sends it. */
function fromOrigin(
  origin: CallOrigin | undefined,
): Pick<Envelope, "chain" | "caller" | "token"> {
  if (!origin) return { chain: [] };
  return {
    chain: origin.chain,
    ...(origin.caller ? { caller: origin.caller } : {}),
    ...(origin.token !== undefined ? { token: origin.token } : {}),
  };
}

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
  let journal: Journal;
  let ownsJournal = false;
  if (options.journal === undefined) {
    journal = memoryJournal();
    ownsJournal = true;
  } else if (typeof options.journal === "string") {
    if (options.journal === ":memory:" && !internals.resolveJournal) journal = memoryJournal();
    else if (!internals.resolveJournal) {
      throw new TypeError(
        `A journal URL ("${options.journal}") needs the libSQL adapter: import createSystem from the package root, or pass libsqlJournal({ url })`,
      );
    } else journal = await internals.resolveJournal(options.journal);
    ownsJournal = true;
  } else journal = options.journal;
  const mesh = options.mesh ?? inProcessMesh();
  let conn: MeshConnection | undefined;
  try {
    conn = await mesh.connect({ node });
    const system = new SystemImpl(node, options, log, journal, ownsJournal, mesh, conn);
    await system.start();
    return system;
  } catch (err) {
    await conn?.close().catch(() => {});
    if (ownsJournal) await journal.close().catch(() => {});
    throw err;
  }
}

class SystemImpl implements System, Dispatcher, ActivationHost {
  readonly node: string;
  readonly log: Logger;
  readonly journal: Journal;
  readonly storage: Codec = msgpack;
  readonly dispatcher: Dispatcher = this;
  readonly wheel = new TimerWheel(5);
  readonly directory: Directory;
  readonly defs = new Map<string, ActorDefinition<AnyActorTypes>>();
  readonly activations = new Map<string, Activation>();
  readonly workers = new Map<string, WorkerPool>();
  readonly wireCodec: Codec;
  readonly maxPayload: number;
  readonly askTimeout: number;
  readonly conn: MeshConnection;
  readonly prefix: string;
  readonly ttl: number;
  membership!: Membership;
  ownership!: Ownership;
  leases!: Leases;
  router!: Router;
  reminders: Reminders | undefined;
  readonly #ownsJournal: boolean;
  readonly #options: SystemOptions;
  #closed = false;
  #accepting = true;
  #closing: Promise<void> | undefined;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #unfence: (() => void) | undefined;

  constructor(
    node: string,
    options: SystemOptions,
    log: Logger,
    journal: Journal,
    ownsJournal: boolean,
    mesh: Mesh,
    conn: MeshConnection,
  ) {
    this.node = node;
    this.log = log;
    this.journal = journal;
    this.#ownsJournal = ownsJournal;
    this.#options = options;
    this.conn = conn;
    this.prefix = mesh.prefix;
    this.ttl = options.leaseTtl ?? mesh.leaseTtl;
    this.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.askTimeout = options.askTimeout ?? 30_000;
    const ct = options.contentType ?? msgpack.contentType;
    const codec = codecFor(ct);
    if (!codec) throw new TypeError(`No codec for content type "${ct}"`);
    this.wireCodec = codec;
    for (const def of options.actors ?? []) {
      if (!def || typeof def.name !== "string" || !TYPE_NAME.test(def.name) || !def.handlers) {
        throw new TypeError("createSystem(): every entry of `actors` must come from defineActor()");
      }
      if (this.defs.has(def.name)) {
        throw new TypeError(`createSystem(): actor type "${def.name}" is listed twice`);
      }
      this.defs.set(def.name, def);
      if (def.stateless) this.workers.set(def.name, new WorkerPool(this, def));
    }
    this.directory = {
      nodes: () => this.membership.nodes(),
      locate: (def, id) => {
        const local = this.activations.get(`${def.name}/${id}`);
        if (local && local.status === "active") return Promise.resolve(this.node);
        return this.ownership.locate(def.name, id);
      },
      watch: (): AsyncIterable<DirectoryEvent> => this.#watch(),
    };
  }

  async start(): Promise<void> {
    const info: NodeInfo = { id: this.node, types: [...this.defs.keys()], since: Date.now() };
    this.membership = await startMembership(this.conn, {
      prefix: this.prefix,
      node: info,
      ttl: this.ttl,
      onWarning: (m) => this.log.warn(m),
    });
    this.ownership = await createOwnership(this.conn, this.membership, { prefix: this.prefix });
    this.leases = await createLeases(this.conn, this.membership, {
      prefix: this.prefix,
      node: this.node,
    });
    this.#unfence = this.membership.on((e) => {
      if (e.type === "fenced") {
        this.log.warn("Node lost its lease: dropping its activations", { reason: e.reason });
        for (const act of [...this.activations.values()]) void act.passivate(false);
      }
    });
    this.router = new Router(this);
    await this.router.start();
    const idle = Math.min(...[...this.defs.values()].map((d) => d.idleAfter), 60_000);
    this.#idleTimer = setInterval(
      () => this.#sweepIdle(),
      Math.max(10, Math.min(1000, idle / 2)),
    );
    if (this.#options.reminders !== false && this.defs.size > 0) {
      this.reminders = new Reminders(this);
      this.reminders.start();
    }
  }

  // ---- ActivationHost ----

  fenced(): boolean {
    return this.membership.isFenced();
  }

  publish(topic: string, payload: unknown): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError("The system is closed"));
    return this.router.publish(topic, payload);
  }

  reminderScheduled(due: number): void {
    this.reminders?.scheduled(due);
  }

  async claim(act: Activation): Promise<void> {
    const res = await this.ownership.claim(act.def.name, act.id);
    if (!res.ok) throw new Redirect(res.owner);
  }

  stopped(act: Activation, leftover: Envelope[], owner?: string): void {
    if (this.activations.get(act.key) === act) {
      this.activations.delete(act.key);
      if (owner === undefined) {
        this.ownership.release(act.def.name, act.id).catch((err) =>
          this.log.debug("Release of ownership failed", { actor: act.key, error: String(err) })
        );
      }
    }
    for (const m of leftover) {
      // While closing, nothing is re-activated here (remote callers were told to go elsewhere).
      if (this.#closed || !this.#accepting) m.reject(new ClosedError("The system is closed"));
      else if (owner !== undefined) this.router.forward(owner, act.def.name, act.id, m);
      else this.deliver(act.def.name, act.id, m);
    }
  }

  // ---- Dispatcher ----

  send(
    type: string,
    id: string,
    kind: "ask" | "tell",
    handler: string,
    payload: unknown,
    options: AskOptions | undefined,
    origin: CallOrigin | undefined,
  ): Promise<unknown> {
    if (this.#closed || (!origin && !this.#accepting)) {
      return Promise.reject(new ClosedError("The system is closed"));
    }
    const timeout = options?.timeout ?? this.askTimeout;
    let deadline = performance.now() + timeout;
    if (origin && origin.deadline < deadline) deadline = origin.deadline;
    return new Promise((resolve, reject) => {
      let settled = false;
      const entry = this.wheel.add(deadline, () => {
        if (settled) return;
        settled = true;
        reject(
          new TimeoutError(`${kind} ${type}/${id}.${handler} timed out after ${timeout} ms`),
        );
      });
      const done = (fn: () => void) => {
        if (settled) return;
        settled = true;
        this.wheel.remove(entry);
        fn();
      };
      const signal = options?.signal;
      if (signal) {
        if (signal.aborted) return done(() => reject(signal.reason));
        signal.addEventListener("abort", () => done(() => reject(signal.reason)), { once: true });
      }
      const m: Envelope = {
        kind,
        handler,
        payload,
        deadline,
        ...fromOrigin(origin),
        ...(options?.idempotencyKey !== undefined
          ? { idempotencyKey: options.idempotencyKey }
          : {}),
        resolve: kind === "ask" ? (v) => done(() => resolve(v)) : () => {},
        reject: kind === "ask" ? (e) => done(() => reject(e)) : (e) => {
          if (!settled) done(() => reject(e));
          else this.log.debug(`tell ${type}/${id}.${handler} failed`, { error: String(e) });
        },
      };
      if (kind === "tell") {
        (m as { accepted?: () => void }).accepted = () => done(() => resolve(undefined));
      }
      this.deliver(type, id, m);
    });
  }

  stream(
    type: string,
    id: string,
    handler: string,
    payload: unknown,
    options: StreamOptions | undefined,
    origin: CallOrigin | undefined,
  ): ActorStream<unknown> {
    const channel = new StreamChannel(options?.window ?? 16);
    if (this.#closed || (!origin && !this.#accepting)) {
      channel.error(new ClosedError("The system is closed"));
      return channel;
    }
    const timeout = options?.timeout ?? this.askTimeout;
    let deadline = performance.now() + timeout;
    if (origin && origin.deadline < deadline) deadline = origin.deadline;
    const m: Envelope = {
      kind: "stream",
      handler,
      payload,
      deadline,
      ...fromOrigin(origin),
      resolve: () => {},
      reject: (e) => channel.error(e),
      sink: channel,
    };
    this.deliver(type, id, m);
    return channel;
  }

  /** Routes a message: to a local activation or worker pool, or across the mesh. */
  deliver(type: string, id: string, m: Envelope): void {
    if (this.#closed) return m.reject(new ClosedError("The system is closed"));
    if (sizeLowerBound(m.payload, this.maxPayload) > this.maxPayload) {
      return m.reject(
        new BadPayloadError(
          `Payload of ${type}.${m.handler} exceeds the limit of ${this.maxPayload} bytes`,
        ),
      );
    }
    const def = this.defs.get(type);
    if (!def) return this.router.send(type, id, m);
    const err = this.#checkHandler(def, m);
    if (err) return m.reject(err);
    if (def.stateless) {
      const local = this.router.workerIsLocalOnly(type);
      if (local) return this.#accept(m, () => this.workers.get(type)!.enqueue(m));
      return this.router.send(type, id, m);
    }
    const key = `${type}/${id}`;
    const act = this.activations.get(key);
    if (act) return this.#accept(m, () => act.enqueue(m));
    const owner = this.router.placeActor(type, id);
    if (owner !== undefined && owner !== this.node) return this.router.send(type, id, m);
    this.#accept(m, () => this.activate(def, id).enqueue(m));
  }

  /** Delivers a message that must be handled on this node (it was routed here). */
  deliverHere(type: string, id: string, m: Envelope): void {
    if (this.#closed) return m.reject(new ClosedError("The system is closed"));
    const def = this.defs.get(type);
    if (!def) {
      return m.reject(new UnknownActorTypeError(`Node "${this.node}" does not host "${type}"`));
    }
    const err = this.#checkHandler(def, m);
    if (err) return m.reject(err);
    if (def.stateless) return this.#accept(m, () => this.workers.get(type)!.enqueue(m));
    const key = `${type}/${id}`;
    const act = this.activations.get(key) ?? this.activate(def, id);
    this.#accept(m, () => act.enqueue(m));
  }

  #accept(m: Envelope, enqueue: () => void): void {
    let rejected = false;
    const reject = m.reject;
    (m as { reject: (e: unknown) => void }).reject = (e) => {
      rejected = true;
      reject(e);
    };
    enqueue();
    (m as { reject: (e: unknown) => void }).reject = reject;
    if (!rejected) (m as { accepted?: () => void }).accepted?.();
  }

  #checkHandler(def: ActorDefinition<AnyActorTypes>, m: Envelope): Error | undefined {
    if (!Object.hasOwn(def.handlers, m.handler)) {
      return new UnknownHandlerError(`Actor type "${def.name}" has no handler "${m.handler}"`);
    }
    const streaming = def.streaming.has(m.handler);
    if (streaming !== (m.kind === "stream")) {
      return new UnknownHandlerError(
        streaming
          ? `Handler "${def.name}.${m.handler}" is a streaming handler: call it with ref.stream()`
          : `Handler "${def.name}.${m.handler}" is not a streaming handler: call it with ask/tell`,
      );
    }
    return undefined;
  }

  activate(def: ActorDefinition<AnyActorTypes>, id: string): Activation {
    const act = new ActivationImpl(this, def, id);
    this.activations.set(act.key, act);
    act.ready.then(() => this.router.activated(act), () => {});
    return act;
  }

  #sweepIdle(): void {
    const now = performance.now();
    for (const act of this.activations.values()) {
      if (
        act.status === "active" && !act.busy && act.queued === 0 &&
        now - act.lastActive > act.def.idleAfter
      ) {
        void act.passivate(true);
      }
    }
  }

  // ---- public API ----

  ref<T extends ActorTypes>(def: ActorDefinition<T>, id = ""): ActorRef<T> {
    if (!def || typeof def.name !== "string") {
      throw new TypeError("system.ref() expects a definition from defineActor()");
    }
    if (!def.stateless && id === "") {
      throw new TypeError(
        `system.ref(${def.name}) needs an id (only stateless workers go without)`,
      );
    }
    return makeRef(this, def, id);
  }

  async *history<T extends ActorTypes>(
    def: ActorDefinition<T>,
    id: string,
    options: { from?: number } = {},
  ): AsyncIterable<HistoryEvent<T["events"][keyof T["events"]]>> {
    const key = `${def.name}/${id}`;
    let next = Math.max(1, options.from ?? 1);
    for (;;) {
      if (this.#closed) throw new ClosedError("The system is closed");
      const page = await this.journal.read(key, next, 500);
      for (const e of page) {
        const payload = upcast(
          def as unknown as ActorDefinition<AnyActorTypes>,
          e.type,
          e.version,
          this.storage.decode(e.data),
        ) as T["events"][keyof T["events"]];
        yield { seq: e.seq, type: e.type, payload, at: new Date(e.at) };
      }
      if (page.length < 500) return;
      next = page[page.length - 1]!.seq + 1;
    }
  }

  subscribe(
    topic: string,
    handler: (payload: unknown, topic: string) => void | Promise<void>,
    options: { group?: string } = {},
  ): Subscription {
    if (this.#closed) throw new ClosedError("The system is closed");
    return this.router.subscribe(topic, handler, options.group);
  }

  lease(name: string, options?: LeaseOptions): Promise<Lease> {
    if (this.#closed) return Promise.reject(new ClosedError("The system is closed"));
    return this.leases.lease(name, options);
  }

  lock<R>(name: string, fn: (lease: Lease) => R | Promise<R>, options?: LeaseOptions): Promise<R> {
    if (this.#closed) return Promise.reject(new ClosedError("The system is closed"));
    return this.leases.lock(name, fn, options);
  }

  elect(name: string, options: ElectOptions = {}): Leader {
    if (this.#closed) throw new ClosedError("The system is closed");
    return this.leases.elect(name, options);
  }

  #watch(): AsyncIterable<DirectoryEvent> {
    const queue = createEventQueue<DirectoryEvent>();
    const sources = [this.membership.watch(), this.ownership.watch()];
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

  async #close(): Promise<void> {
    this.#accepting = false;
    clearInterval(this.#idleTimer);
    await this.reminders?.stop();
    this.router.stopAccepting();
    // Drain: queued messages finish (each bounded by its deadline), then passivate.
    await Promise.allSettled([...this.activations.values()].map((a) => a.passivate(true)));
    this.#closed = true;
    this.#unfence?.();
    await this.leases.close().catch((err) => this.log.warn("Lease release failed", { err }));
    await this.ownership.close().catch(() => {});
    // Leave the membership before unsubscribing, so callers re-place at once.
    await this.membership.close().catch(() => {});
    await this.router.close();
    this.wheel.close();
    await this.conn.close().catch(() => {});
    if (this.#ownsJournal) await this.journal.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

export { json, msgpack };
