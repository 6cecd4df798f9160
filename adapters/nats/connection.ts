/**
 * A node's connection to NATS: publish, request/reply through one multiplexed reply
 * subscription, subscribe, flush, KV buckets, status and close. Internal: `natsMesh` returns
 * it as a {@link MeshConnection}.
 *
 * @module
 */

import {
  createInbox,
  errors as natsErrors,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/nats-core";
import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import {
  type DurableTopics,
  type KvBucket,
  type KvOptions,
  type MeshConnection,
  MeshError,
  type MeshMessage,
  type MeshStatus,
  type MeshSubscription,
  type PublishOptions,
  type RequestOptions,
  type SubscribeOptions,
  systemClock,
  TimerWheel,
  type WheelEntry,
} from "../../spi.ts";
import {
  checkRequestSubject,
  checkSubject,
  isStreamNotFound,
  isTemporaryBucketOpen,
  isTemporaryJs,
  retry,
  toMeshError,
  toMeshMessage,
  toNatsHeaders,
} from "./_util.ts";
import { NatsDurableTopics } from "./durable.ts";
import { NatsKvBucket, replicatedCasIsSafe } from "./kv.ts";
import type { KvHost, NatsKvWatch } from "./kv_watch.ts";
import type { NatsMeshOptions } from "./options.ts";
import { checkJetStream } from "./setup.ts";

/**
 * The {@link MeshConnection} of one node. Besides the port's methods it has members that
 * only the NATS adapter's modules use (`kv.ts`, `kv_watch.ts`), marked internal.
 */
export class NatsMeshConnection implements MeshConnection, KvHost {
  /** The NATS client connection. Internal. */
  readonly nc: NatsConnection;
  readonly node: string;
  /** The JetStream client (KV deletes publish through it). Internal. */
  readonly js: JetStreamClient;
  readonly #options: NatsMeshOptions;
  readonly #listeners = new Set<(status: MeshStatus) => void>();
  readonly #statusLoop: Promise<void>;
  /** Watches, told about reconnects; their start-up promises gate our KV writes. Internal. */
  readonly watches = new Set<NatsKvWatch>();
  /** Whether the client is connected now (watches restart only when it is). Internal. */
  connected = true;
  readonly #jsmByTimeout = new Map<number, Promise<JetStreamManager>>();
  #closing: Promise<void> | undefined;
  #setup: Promise<void> | undefined;

  /** Wraps a connected client; called by `natsMesh().connect`. Internal. */
  constructor(nc: NatsConnection, node: string, options: NatsMeshOptions) {
    this.nc = nc;
    this.node = node;
    this.#options = options;
    this.js = jetstream(nc, { timeout: options.kvTimeout ?? 5000 });
    this.#statusLoop = this.#watchStatus();
  }

  get maxPayload(): number {
    return this.nc.info?.max_payload ?? 1024 * 1024;
  }

  /** The options of the mesh. Internal. */
  get options(): NatsMeshOptions {
    return this.#options;
  }

  /** The JetStream manager (KV timeout), created on first use. Internal. */
  jsm(): Promise<JetStreamManager> {
    return this.jsmWithTimeout(Infinity);
  }

  /**
   * A JetStream manager whose requests time out after `timeout` ms (at most the KV timeout),
   * created on first use. Watches use it to recreate their consumers with a short timeout
   * first: after a server dies, nats-server 2.9.10 answers no consumer create until a new
   * meta leader is elected (~5 s when the dead server led), and then still places about one
   * R1 consumer in three on the dead server (measured for 25 s after a kill -9), and such a
   * create never answers. Internal.
   */
  jsmWithTimeout(timeout: number): Promise<JetStreamManager> {
    const t = Math.min(this.#options.kvTimeout ?? 5000, timeout);
    let jsm = this.#jsmByTimeout.get(t);
    if (!jsm) {
      jsm = jetstreamManager(this.nc, { timeout: t, checkAPI: false });
      this.#jsmByTimeout.set(t, jsm);
    }
    return jsm;
  }

  async #watchStatus(): Promise<void> {
    let disconnectedAt = performance.now();
    for await (const s of this.nc.status()) {
      let status: MeshStatus | undefined;
      switch (s.type) {
        case "disconnect":
          this.connected = false;
          disconnectedAt = performance.now();
          status = { type: "disconnect", server: s.server };
          break;
        case "reconnect":
          this.connected = true;
          for (const w of this.watches) w.reconnected(performance.now() - disconnectedAt);
          status = { type: "reconnect", server: s.server };
          break;
        case "error":
          status = { type: "error", error: s.error };
          break;
        case "slowConsumer":
          status = {
            type: "error",
            error: new Error(`Slow consumer on "${s.sub.getSubject()}": ${s.pending} pending`),
          };
          break;
      }
      if (status) this.emit(status);
    }
  }

  /** Tells the status listeners (logs errors when there are none). Internal. */
  emit(status: MeshStatus): void {
    if (status.type === "error" && this.#listeners.size === 0) {
      // a permission violation's stack is the client's parser: its message says it all
      const e = status.error;
      const error = e instanceof natsErrors.PermissionViolationError ? e.message : e;
      console.error(`troupe nats mesh (node "${this.node}"):`, error);
    }
    for (const l of this.#listeners) {
      try {
        l(status);
      } catch (err) {
        console.error("troupe nats mesh: status listener threw", err);
      }
    }
  }

  #check(): void {
    if (this.#closing) {
      throw new MeshError(
        "closed",
        `Cannot use the NATS connection of node "${this.node}": closed`,
      );
    }
  }

  /**
   * Publishes. Subjects starting with `$` (`$JS.API.…`, `$KV.…`, `$SYS.…`: the server's and
   * JetStream's APIs) are refused with a TypeError: the core publishes only replies, stream
   * frames and topic messages, and their subjects come from callers, so a caller naming
   * `$JS.API.STREAM.DELETE.KV_troupe_acts` or `$KV.troupe_nodes.x` as its reply subject
   * would otherwise make a node, which may use those APIs, delete or write the directory.
   * (The adapter's own JetStream calls do not go through here.)
   */
  publish(subject: string, data: Uint8Array, options?: PublishOptions): void {
    this.#check();
    checkSubject(subject, "publish to");
    if (subject.charCodeAt(0) === 36 /* $ */) {
      throw new TypeError(
        `Cannot publish to "${subject}": subjects starting with $ are NATS and JetStream APIs`,
      );
    }
    try {
      const opts: { headers?: MsgHdrs; reply?: string } = {};
      const h = toNatsHeaders(options?.headers);
      if (h) opts.headers = h;
      if (options?.reply !== undefined) opts.reply = options.reply;
      this.nc.publish(subject, data, opts);
    } catch (err) {
      throw toMeshError(err, `Cannot publish to "${subject}"`);
    }
  }

  /**
   * Request/reply through one reply subscription per connection (`<inbox>.*`), like the
   * client's own mux but without its per-request costs (it builds an `Error`, with a stack
   * trace, for every request it completes): a token per request, a map of pending requests, and
   * one coarse timer for all their deadlines. "No responders" is the server's 503 status on
   * the reply subject.
   */
  // deno-lint-ignore require-await
  async request(subject: string, data: Uint8Array, options: RequestOptions): Promise<MeshMessage> {
    this.#check();
    options.signal?.throwIfAborted();
    checkRequestSubject(subject);
    const prefix = this.#muxPrefix ??= this.#startMux();
    const token = (++this.#muxSeq).toString(36);
    return new Promise<MeshMessage>((resolve, reject) => {
      const p = new PendingRequest(
        this.#pending,
        this.#deadlines,
        token,
        subject,
        resolve,
        reject,
        options,
      );
      p.entry = this.#deadlines.add(performance.now() + p.timeout, p.expire);
      this.#pending.set(token, p);
      try {
        const reply = `${prefix}.${token}`;
        const headers = options.headers && toNatsHeaders(options.headers);
        this.nc.publish(subject, data, headers ? { reply, headers } : { reply });
      } catch (err) {
        p.cancel(toMeshError(err, `Request to "${subject}"`));
      }
    });
  }

  #muxPrefix: string | undefined;
  #muxSeq = 0;
  /** Requests waiting for their reply, by token. */
  readonly #pending = new Map<string, PendingRequest>();
  readonly #deadlines = new TimerWheel(systemClock, 5);

  #startMux(): string {
    const prefix = this.inbox();
    const strip = prefix.length + 1;
    this.nc.subscribe(`${prefix}.*`, {
      callback: (err, msg) => {
        if (err) return;
        this.#pending.get(msg.subject.slice(strip))?.answer(msg);
      },
    });
    return prefix;
  }

  readonly #report = (error: unknown) => this.emit({ type: "error", error });

  subscribe(
    subject: string,
    handler: (msg: MeshMessage) => void,
    options?: SubscribeOptions,
  ): MeshSubscription {
    this.#check();
    checkSubject(subject, "subscribe to", true);
    // One closure per subscription (the callback); everything else is shared: an active actor
    // holds a subscription, and a node may hold a hundred thousand.
    const report = this.#report;
    try {
      const opts: { queue?: string; callback: (err: Error | null, msg: Msg) => void } = {
        callback: (err, msg) => {
          if (err) return report(err);
          try {
            const r = handler(toMeshMessage(msg)) as unknown;
            if (r instanceof Promise) r.catch(report);
          } catch (error) {
            report(error);
          }
        },
      };
      if (options?.queue !== undefined) opts.queue = options.queue;
      return new NatsSubscription(subject, this.nc.subscribe(subject, opts));
    } catch (err) {
      throw toMeshError(err, `Cannot subscribe to "${subject}"`);
    }
  }

  /**
   * A fresh inbox subject under the connection's inbox prefix (`_INBOX` unless the mesh's
   * `inboxPrefix` option set another).
   */
  inbox(): string {
    return createInbox(this.#options.inboxPrefix);
  }

  async flush(): Promise<void> {
    this.#check();
    try {
      await this.nc.flush();
    } catch (err) {
      throw toMeshError(err, "Cannot flush");
    }
  }

  async kv(bucket: string, options?: KvOptions): Promise<KvBucket> {
    this.#check();
    if (!/^[A-Za-z0-9_-]+$/.test(bucket)) {
      throw new TypeError(`Cannot open KV bucket "${bucket}": name must match [A-Za-z0-9_-]+`);
    }
    const history = options?.history ?? 1;
    if (!(Number.isInteger(history) && history >= 1 && history <= 64)) {
      throw new RangeError(`Cannot open KV bucket "${bucket}" with history ${history}: 1 to 64`);
    }
    await this.ensureJetStream();
    const replicas = this.replicasFor(options?.replicas);
    const deadline = performance.now() + 3 * (this.#options.connectTimeout ?? 10_000);
    const what = `Cannot open KV bucket "${bucket}"`;
    const kvm = new Kvm(this.js);
    const kv = await retry(
      () => kvm.create(bucket, { history, replicas, allow_direct: false }),
      isTemporaryBucketOpen,
      deadline,
      what,
    );
    const jsm = await this.jsm();
    // wait until the stream has a leader, so that the first writes do not fail
    const info = await retry(
      async () => {
        const si = await jsm.streams.info(`KV_${bucket}`);
        if (si.config.num_replicas > 1 && !si.cluster?.leader) {
          throw new natsErrors.TimeoutError();
        }
        return si;
      },
      isTemporaryBucketOpen,
      deadline,
      what,
    );
    const serialized = info.config.num_replicas <= 1 || replicatedCasIsSafe(this.nc.info?.version);
    return new NatsKvBucket(this, kv, bucket, String(info.created), serialized);
  }

  /**
   * Checks once that this connection may use JetStream: a server without it, or a user without
   * a node's permissions, fails here with a `NatsSetupError`. Internal.
   */
  ensureJetStream(): Promise<void> {
    const probe = Math.min(this.#options.kvTimeout ?? 5000, 2000);
    return this.#setup ??= checkJetStream(this.nc, this.node, this.#options.user, probe);
  }

  /** This connection's durable topics (JetStream), made on first use. */
  durableTopics(): DurableTopics {
    this.#check();
    return this.#durable ??= new NatsDurableTopics(this);
  }

  #durable: NatsDurableTopics | undefined;

  async deleteKv(bucket: string): Promise<void> {
    this.#check();
    if (!/^[A-Za-z0-9_-]+$/.test(bucket)) {
      throw new TypeError(`Cannot delete KV bucket "${bucket}": name must match [A-Za-z0-9_-]+`);
    }
    const what = `Cannot delete KV bucket "${bucket}"`;
    const jsm = await this.jsm();
    try {
      await retry(
        () => jsm.streams.delete(`KV_${bucket}`),
        isTemporaryJs,
        performance.now() + (this.#options.kvRetry ?? 5000),
        what,
      );
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
    }
  }

  /** Replicas of a new stream: `requested`, else 3 with ≥ 3 known servers; clamped. Internal. */
  replicasFor(requested: number | undefined): number {
    const info = this.nc.info;
    const size = Math.max(new Set(info?.connect_urls ?? []).size, this.#knownServers());
    const wanted = this.#options.replicas ?? requested ??
      (size >= 3 ? 3 : 1);
    return Math.max(1, Math.min(wanted, size, 5));
  }

  #knownServers(): number {
    // deno-lint-ignore no-explicit-any
    const servers = (this.nc as any).protocol?.servers?.getServers?.() as unknown[] | undefined;
    return servers?.length ?? 1;
  }

  onStatus(listener: (status: MeshStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    for (const w of [...this.watches]) w.stop();
    await this.#durable?.close();
    if (!this.nc.isClosed()) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const bounded = new Promise<void>((resolve) => timer = setTimeout(resolve, 2000));
      try {
        await Promise.race([this.nc.drain().catch(() => {}), bounded]);
      } finally {
        clearTimeout(timer);
      }
      await this.nc.close().catch(() => {});
    }
    await this.nc.closed();
    await this.#statusLoop;
    this.#listeners.clear();
    for (const p of [...this.#pending.values()]) {
      p.cancel(new MeshError("closed", `Request of node "${this.node}" failed: connection closed`));
    }
    this.#deadlines.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A subscription of the NATS mesh (methods on the prototype: no closures per subscription). */
class NatsSubscription implements MeshSubscription {
  constructor(readonly subject: string, readonly sub: Subscription) {}

  unsubscribe(): void {
    try {
      this.sub.unsubscribe();
    } catch {
      // closed already
    }
  }

  async drain(): Promise<void> {
    try {
      await this.sub.drain();
    } catch {
      // closed already
    }
  }
}

/**
 * One request waiting for its reply: one object per request (its deadline on the connection's
 * timer wheel, its cancel hook) instead of a closure per outcome.
 */
class PendingRequest {
  entry: WheelEntry | undefined;
  readonly timeout: number;
  readonly #onAbort: (() => void) | undefined;

  constructor(
    readonly pending: Map<string, PendingRequest>,
    readonly wheel: TimerWheel,
    readonly token: string,
    readonly subject: string,
    readonly resolve: (msg: MeshMessage) => void,
    readonly reject: (err: unknown) => void,
    readonly options: RequestOptions,
  ) {
    this.timeout = Math.max(1, Math.ceil(options.timeout));
    const { signal, handle } = options;
    if (handle) handle.cancel = this.cancel;
    if (signal) {
      this.#onAbort = () => this.cancel(signal.reason);
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  #finish(): boolean {
    if (this.pending.get(this.token) !== this) return false;
    this.pending.delete(this.token);
    if (this.entry) this.wheel.remove(this.entry);
    if (this.#onAbort) this.options.signal!.removeEventListener("abort", this.#onAbort);
    if (this.options.handle) this.options.handle.cancel = undefined;
    return true;
  }

  /** Rejects the request with `err` (a cancel, a closed connection). */
  readonly cancel = (err: unknown): void => {
    if (this.#finish()) this.reject(err);
  };

  /** Its deadline passed. */
  readonly expire = (): void => {
    this.cancel(
      new MeshError("timeout", `Request to "${this.subject}" timed out after ${this.timeout} ms`),
    );
  };

  /** Its reply arrived: "no responders" is the server's 503 status with an empty body. */
  answer(msg: Msg): void {
    if (!this.#finish()) return;
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      this.reject(new MeshError("no_responders", `Request to "${this.subject}": no responders`));
    } else this.resolve(toMeshMessage(msg));
  }
}
