/**
 * The {@link Mesh} port on NATS: core NATS for messages (TCP or WebSocket) and JetStream KV
 * for buckets.
 *
 * Decisions (see the option docs for the knobs):
 * - Reconnects never stop (`maxReconnectAttempts: -1`, 250 ms ± 100 ms between attempts);
 *   a dead server is noticed after two missed pings (`pingInterval` 2 s → about 4–6 s).
 * - `get` reads through the stream leader (`$JS.API.STREAM.MSG.GET`), never through direct
 *   get, which any replica may answer with stale data: buckets are opened with
 *   `allow_direct: false`, which makes the 3.4 client use the leader API even when the
 *   bucket's stream allows direct gets.
 * - `incarnation` is the `created` time of the bucket's stream: it changes when the bucket
 *   is deleted and created again, and is kept by every replica (it comes from the stream
 *   assignment).
 * - Watches are our own ordered push consumers with 1 s idle heartbeats: a watch whose
 *   consumer died with its server, or that missed messages during a reconnect, restarts
 *   from the last revision it delivered within ~3 s (the client's own ordered consumer
 *   waits for 2 × 30 s heartbeats).
 *
 * @module
 */

import { connect as tcpConnect } from "@nats-io/transport-node";
import {
  type ConnectionOptions,
  createInbox,
  errors as natsErrors,
  headers as natsHeaders,
  type Msg,
  type MsgHdrs,
  nanos,
  type NatsConnection,
  type Subscription,
  wsconnect,
  type WsSocketFactory,
} from "@nats-io/nats-core";
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import {
  type KvBucket,
  type KvEntry,
  type KvOptions,
  type KvWatch,
  type Mesh,
  type MeshConnection,
  MeshError,
  type MeshHeaders,
  type MeshMessage,
  type MeshStatus,
  type MeshSubscription,
  type PublishOptions,
  type RequestOptions,
  type SubscribeOptions,
} from "../../src/mesh/types.ts";
import { isValidSubject } from "../../src/mesh/subject.ts";
import { delay, TimerWheel, type WheelEntry } from "../../src/util/async.ts";

/**
 * Options of {@link natsMesh}.
 *
 * @example
 * ```ts
 * import { natsMesh, type NatsMeshOptions } from "@troupe/troupe/nats";
 *
 * const options: NatsMeshOptions = {
 *   servers: ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"],
 *   user: "troupe",
 *   pass: "s3cret",
 *   leaseTtl: 5_000,
 * };
 * const mesh = natsMesh(options);
 * ```
 */
export interface NatsMeshOptions {
  /**
   * Server URLs: `nats://host:port`, `tls://host:port` or `host:port` use TCP;
   * `ws://` or `wss://` use WebSocket. All URLs of one mesh must use the same transport.
   */
  servers: string | string[];
  /** First token of every Troupe subject and of bucket names. @default {"troupe"} */
  prefix?: string;
  /** User name. */
  user?: string;
  /** Password of `user`. */
  pass?: string;
  /** Token. */
  token?: string;
  /** TLS options for TCP connections (`wss://` URLs use the runtime's TLS). */
  tls?: TlsOptions;
  /**
   * Lease time-to-live for membership and ownership, in ms: a crashed node's actors move after
   * about `leaseTtl + 1 s`. Keep it above the time the NATS cluster needs to elect a new
   * JetStream leader after losing a server (measured 4.6–7 s on nats-server 2.9.10 with R3
   * buckets): a node whose heartbeats cannot be written for `leaseTtl` fences itself.
   * @default {10000}
   */
  leaseTtl?: number;
  /** Connection name shown by the server. @default {"troupe:<node>"} */
  name?: string;
  /**
   * KV replicas. When set, it overrides what the core asks for; otherwise the core's
   * request is used, else 3 when the client knows of 3 or more servers in the cluster (so the
   * directory survives the loss of a server), else 1. Always clamped to the known cluster
   * size (and 5). Before nats-server 2.9.21 (see {@link replicatedCasIsSafe}) replicated
   * compare-and-set can let two writers win: Troupe's correctness then rests on the
   * journal's epoch fence, never on the KV alone (see docs/architecture.md).
   */
  replicas?: number;
  /** Client ping interval in ms; two missed pings mark the connection dead. @default {2000} */
  pingInterval?: number;
  /**
   * Which WebSocket client `ws://`/`wss://` servers use. `"auto"` takes the `ws` package
   * (its sockets disable Nagle's algorithm: with the runtime's own WebSocket, many requests
   * in flight stall on delayed ACKs, ~20x slower on loopback) and falls back to the
   * runtime's `WebSocket` where that package cannot load (edge runtimes). @default {"auto"}
   */
  webSocket?: "auto" | "native" | "ws";
  /** How long `connect` keeps trying to reach a server, in ms. @default {10000} */
  connectTimeout?: number;
  /** Timeout of JetStream API calls (KV reads and writes), in ms. @default {5000} */
  kvTimeout?: number;
  /**
   * How long KV calls keep retrying while JetStream has no responders (a stream without a
   * leader: fresh replicated bucket, leader election after a server died), in ms; bucket
   * creation retries up to `connectTimeout` × 3. @default {5000}
   */
  kvRetry?: number;
}

type Transport = "tcp" | "ws";

function classify(servers: string[]): Transport {
  if (servers.length === 0) {
    throw new TypeError("Cannot create a NATS mesh: `servers` is empty");
  }
  let kind: Transport | undefined;
  for (const s of servers) {
    if (typeof s !== "string" || s.trim() === "") {
      throw new TypeError(`Cannot use NATS server ${JSON.stringify(s)}: not a URL`);
    }
    const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s);
    const scheme = m ? m[1]!.toLowerCase() : undefined;
    let k: Transport;
    if (scheme === "ws" || scheme === "wss") k = "ws";
    else if (scheme === undefined || scheme === "nats" || scheme === "tls") k = "tcp";
    else {
      throw new TypeError(
        `Cannot use NATS server "${s}": use nats://, tls://, ws://, wss:// or host:port`,
      );
    }
    if (kind !== undefined && k !== kind) {
      throw new TypeError(
        `Cannot mix WebSocket and TCP servers in one NATS mesh: ${JSON.stringify(servers)}`,
      );
    }
    kind = k;
  }
  return kind!;
}

/** TLS settings of TCP connections (the same fields as the NATS client's `TlsOptions`). */
export interface TlsOptions {
  /** Start TLS before the server's INFO (the server needs `handshake_first: true`). */
  handshakeFirst?: boolean;
  /** Path of the client certificate (PEM). */
  certFile?: string;
  /** The client certificate (PEM). */
  cert?: string;
  /** Path of the CA certificate(s) to trust (PEM). */
  caFile?: string;
  /** The CA certificate(s) to trust (PEM). */
  ca?: string;
  /** Path of the client key (PEM). */
  keyFile?: string;
  /** The client key (PEM). */
  key?: string;
}

/**
 * A {@link Mesh} on NATS: core NATS for routing and pub/sub, JetStream KV for membership,
 * ownership and leases. Pass it to `createSystem({ mesh })`.
 *
 * @example
 * ```ts
 * import { natsMesh } from "@troupe/troupe/nats";
 *
 * const mesh = natsMesh({ servers: ["nats://127.0.0.1:4222"], leaseTtl: 5_000 });
 * const conn = await mesh.connect({ node: "api-1" });
 * const kv = await conn.kv("troupe-demo", { history: 1 });
 * await kv.put("hello", new TextEncoder().encode("world"));
 * await conn.close();
 * ```
 * @throws {TypeError} When `servers` is empty or mixes WebSocket and TCP URLs.
 */
export function natsMesh(options: NatsMeshOptions): Mesh {
  const servers = Array.isArray(options.servers) ? [...options.servers] : [options.servers];
  const transport = classify(servers);
  const leaseTtl = options.leaseTtl ?? 10_000;
  if (!(leaseTtl > 0)) throw new RangeError(`Cannot use leaseTtl ${leaseTtl}: must be > 0`);
  const prefix = options.prefix ?? "troupe";
  if (!/^[A-Za-z0-9_-]+$/.test(prefix)) {
    throw new TypeError(`Cannot use prefix "${prefix}": must match [A-Za-z0-9_-]+`);
  }
  if (options.replicas !== undefined && !(options.replicas >= 1 && options.replicas <= 5)) {
    throw new RangeError(`Cannot use replicas ${options.replicas}: must be 1 to 5`);
  }
  return {
    kind: "nats",
    leaseTtl,
    prefix,
    connect: ({ node, signal }) => connectNode(servers, transport, options, node, signal),
  };
}

function backoff(attempt: number): number {
  const base = Math.min(1000, 50 * 2 ** attempt);
  return base / 2 + Math.random() * base / 2;
}

const SOCKET_ERRORS = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED"]);
let socketGuard = false;

/**
 * The NATS client for Node removes its sockets' `error` listeners for short windows (after it
 * read the server's INFO, and when it discards a socket): a connection reset by a server that
 * dies, or that refuses a login, in such a window surfaces as an uncaught exception that would end
 * the process. Troupe installs one narrow guard: an uncaught error whose code is a socket error
 * and that comes from the runtime's TCP layer is logged (the client sees the closed socket and
 * reconnects) instead of ending the process. Anything else stays uncaught.
 */
export function installSocketGuard(): void {
  if (socketGuard || typeof globalThis.addEventListener !== "function") return;
  socketGuard = true;
  globalThis.addEventListener("error", (event) => {
    const err = (event as ErrorEvent).error as { code?: unknown; stack?: unknown } | undefined;
    if (
      err && typeof err.code === "string" && SOCKET_ERRORS.has(err.code) &&
      typeof err.stack === "string" && /TCPWrap|stream_base_commons|net\./.test(err.stack)
    ) {
      event.preventDefault();
      console.warn(`troupe nats mesh: ignored a late socket error (${err.code})`);
    }
  });
}

async function connectNode(
  servers: string[],
  transport: Transport,
  options: NatsMeshOptions,
  node: string,
  signal: AbortSignal | undefined,
): Promise<MeshConnection> {
  const deadline = performance.now() + (options.connectTimeout ?? 10_000);
  const base: ConnectionOptions = {
    servers,
    name: options.name ?? `troupe:${node}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    reconnectJitterTLS: 250,
    pingInterval: options.pingInterval ?? 2000,
    maxPingOut: 2,
    waitOnFirstConnect: false,
    noAsyncTraces: true,
  };
  if (options.user !== undefined) base.user = options.user;
  if (options.pass !== undefined) base.pass = options.pass;
  if (options.token !== undefined) base.token = options.token;
  if (options.tls !== undefined) base.tls = options.tls;
  if (transport !== "ws") installSocketGuard();
  let attempt = 0;
  let last: unknown;
  while (true) {
    signal?.throwIfAborted();
    const left = deadline - performance.now();
    if (left <= 0) break;
    try {
      const opts = { ...base, timeout: Math.max(100, Math.min(5000, left)) };
      const nc = transport === "ws"
        ? await wsconnect({ ...opts, ...await wsFactoryFor(options.webSocket ?? "auto") })
        : await tcpConnect(opts);
      return new NatsMeshConnection(nc, node, options);
    } catch (err) {
      last = err;
      if (err instanceof natsErrors.AuthorizationError) {
        throw new Error(
          `Cannot connect node "${node}" to NATS at ${servers.join(", ")}: ${err.message}`,
          { cause: err },
        );
      }
    }
    await delay(Math.min(backoff(attempt++), Math.max(0, deadline - performance.now())), signal);
  }
  throw new MeshError(
    "timeout",
    `Cannot connect node "${node}" to NATS at ${servers.join(", ")} within ${
      options.connectTimeout ?? 10_000
    } ms: ${last instanceof Error ? last.message : String(last)}`,
    last,
  );
}

const WRONG_LAST_SEQ = new Set([10071, 10164]);

let wsPackage: Promise<unknown> | undefined;

/** The `wsFactory` connection option for the chosen WebSocket client (none: the runtime's). */
async function wsFactoryFor(
  choice: "auto" | "native" | "ws",
): Promise<{ wsFactory?: WsSocketFactory }> {
  if (choice === "native") return {};
  wsPackage ??= import("ws").then((m) => m.default ?? m, (err) => {
    if (choice === "ws") throw err;
    return undefined;
  });
  const WS = await wsPackage as
    | (new (url: string, options: { perMessageDeflate: boolean }) => WebSocket)
    | undefined;
  if (!WS) return {};
  return {
    wsFactory: (url: string) => {
      const socket = new WS(url, { perMessageDeflate: false });
      return Promise.resolve({ socket, encrypted: url.startsWith("wss://") });
    },
  };
}

/**
 * Whether compare-and-set (create, update) is serialized on a replicated stream of this
 * server version: before 2.9.21 (nats-server #4320) two concurrent writes expecting the same
 * revision can both succeed on an R3 bucket (Troupe then relies on the journal's epoch fence).
 *
 * @example
 * ```ts
 * import { replicatedCasIsSafe } from "@troupe/troupe/nats";
 *
 * replicatedCasIsSafe("2.9.10"); // false
 * replicatedCasIsSafe("2.10.4"); // true
 * ```
 */
export function replicatedCasIsSafe(version: string | undefined): boolean {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version ?? "");
  if (!m) return false;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (major !== 2) return major > 2;
  if (minor !== 9) return minor > 9;
  return patch >= 21;
}

/** Whether a JetStream call got no answer because nothing (no stream leader) listened. */
function isNoResponders(err: unknown): boolean {
  if (err instanceof natsErrors.NoRespondersError) return true;
  if (err instanceof natsErrors.RequestError && err.isNoResponders()) return true;
  if (err instanceof Error && err.name === "JetStreamNotEnabled") return true;
  return false;
}

function isTemporaryJs(err: unknown): boolean {
  if (isNoResponders(err) || err instanceof natsErrors.TimeoutError) return true;
  if (err instanceof JetStreamApiError) {
    // 10008 cluster not available / temporarily unavailable, 10023 insufficient resources,
    // 10058 created concurrently with another config, 503 no leader
    return [10008, 10023, 10058].includes(err.code) || err.status === 503 ||
      /leader|unavailable|insufficient/i.test(err.message);
  }
  return false;
}

/** Maps an error of the NATS client to the mesh's errors (other errors pass through). */
function toMeshError(err: unknown, what: string): unknown {
  if (err instanceof MeshError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (
    err instanceof natsErrors.ClosedConnectionError ||
    err instanceof natsErrors.DrainingConnectionError
  ) return new MeshError("closed", `${what}: connection closed`, err);
  if (isNoResponders(err)) return new MeshError("no_responders", `${what}: no responders`, err);
  if (err instanceof natsErrors.TimeoutError) {
    return new MeshError("timeout", `${what}: timed out`, err);
  }
  if (err instanceof JetStreamApiError) {
    if (WRONG_LAST_SEQ.has(err.code) || /wrong last sequence/i.test(msg)) {
      return new MeshError("kv_conflict", `${what}: ${msg}`, err);
    }
    if (err.code === 10054 || /maximum (message|payload) size/i.test(msg)) {
      return new MeshError("max_payload", `${what}: ${msg}`, err);
    }
    return err;
  }
  if (/max_payload/i.test(msg)) return new MeshError("max_payload", `${what}: ${msg}`, err);
  if (err instanceof natsErrors.RequestError && /cancel/i.test(msg)) {
    return new MeshError("closed", `${what}: cancelled (connection closing)`, err);
  }
  if (
    err instanceof natsErrors.InvalidSubjectError ||
    err instanceof natsErrors.InvalidArgumentError
  ) return new TypeError(`${what}: ${msg}`, { cause: err });
  return err;
}

function checkSubject(subject: string, what: string, wildcards = false): void {
  if (typeof subject !== "string" || !isValidSubject(subject, wildcards)) {
    throw new TypeError(`Cannot ${what} subject "${subject}": invalid subject`);
  }
}

function toNatsHeaders(h: MeshHeaders | undefined): MsgHdrs | undefined {
  if (!h) return undefined;
  let out: MsgHdrs | undefined;
  for (const k in h) {
    out ??= natsHeaders();
    out.set(k, h[k]!);
  }
  return out;
}

const NO_HEADERS: MeshHeaders = Object.freeze({}) as MeshHeaders;

function fromNatsHeaders(msg: Msg): MeshHeaders {
  try {
    const h = msg.headers;
    if (!h) return NO_HEADERS;
    const out: MeshHeaders = {};
    for (const k of h.keys()) out[k] = h.get(k);
    return out;
  } catch {
    return NO_HEADERS; // malformed headers from a foreign client
  }
}

function toMeshMessage(msg: Msg): MeshMessage {
  const headers = fromNatsHeaders(msg);
  return msg.reply
    ? { subject: msg.subject, headers, data: msg.data, reply: msg.reply }
    : { subject: msg.subject, headers, data: msg.data };
}

class NatsMeshConnection implements MeshConnection {
  readonly nc: NatsConnection;
  readonly node: string;
  readonly js: JetStreamClient;
  readonly #options: NatsMeshOptions;
  readonly #listeners = new Set<(status: MeshStatus) => void>();
  readonly #statusLoop: Promise<void>;
  /** Watches, told about reconnects; their start-up promises gate our KV writes. */
  readonly watches = new Set<NatsKvWatch>();
  connected = true;
  readonly #inflight = new Set<(err: unknown) => void>();
  #jsm: Promise<JetStreamManager> | undefined;
  #closing: Promise<void> | undefined;

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

  get options(): NatsMeshOptions {
    return this.#options;
  }

  jsm(): Promise<JetStreamManager> {
    return this.#jsm ??= jetstreamManager(this.nc, {
      timeout: this.#options.kvTimeout ?? 5000,
      checkAPI: false,
    });
  }

  async #watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      let status: MeshStatus | undefined;
      switch (s.type) {
        case "disconnect":
          this.connected = false;
          status = { type: "disconnect", server: s.server };
          break;
        case "reconnect":
          this.connected = true;
          for (const w of this.watches) w.restart("reconnect");
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

  emit(status: MeshStatus): void {
    if (status.type === "error" && this.#listeners.size === 0) {
      console.error(`troupe nats mesh (node "${this.node}"):`, status.error);
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

  publish(subject: string, data: Uint8Array, options?: PublishOptions): void {
    this.#check();
    checkSubject(subject, "publish to");
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
    const { signal } = options;
    signal?.throwIfAborted();
    checkSubject(subject, "request");
    const what = `Request to "${subject}"`;
    const prefix = this.#muxPrefix ??= this.#startMux();
    const token = (++this.#muxSeq).toString(36);
    return new Promise<MeshMessage>((resolve, reject) => {
      const finish = (): boolean => {
        const p = this.#pending.get(token);
        if (!p) return false;
        this.#pending.delete(token);
        this.#inflight.delete(cancel);
        this.#deadlines.remove(p.entry);
        if (onAbort) signal!.removeEventListener("abort", onAbort);
        return true;
      };
      const cancel = (err: unknown) => {
        if (finish()) reject(err);
      };
      const onAbort = signal ? () => cancel(signal.reason) : undefined;
      const timeout = Math.max(1, Math.ceil(options.timeout));
      const entry = this.#deadlines.add(
        performance.now() + timeout,
        () => cancel(new MeshError("timeout", `${what} timed out after ${timeout} ms`)),
      );
      this.#pending.set(token, {
        entry,
        settle: (msg) => {
          if (!finish()) return;
          if (msg.data.length === 0 && msg.headers?.code === 503) {
            reject(new MeshError("no_responders", `${what}: no responders`));
          } else resolve(toMeshMessage(msg));
        },
      });
      this.#inflight.add(cancel);
      if (onAbort) signal!.addEventListener("abort", onAbort, { once: true });
      try {
        const opts: { reply: string; headers?: MsgHdrs } = { reply: `${prefix}.${token}` };
        const h = toNatsHeaders(options.headers);
        if (h) opts.headers = h;
        this.nc.publish(subject, data, opts);
      } catch (err) {
        cancel(toMeshError(err, what));
      }
    });
  }

  #muxPrefix: string | undefined;
  #muxSeq = 0;
  readonly #pending = new Map<string, { entry: WheelEntry; settle: (msg: Msg) => void }>();
  readonly #deadlines = new TimerWheel(5);

  #startMux(): string {
    const prefix = createInbox();
    const strip = prefix.length + 1;
    this.nc.subscribe(`${prefix}.*`, {
      callback: (err, msg) => {
        if (err) return;
        this.#pending.get(msg.subject.slice(strip))?.settle(msg);
      },
    });
    return prefix;
  }

  subscribe(
    subject: string,
    handler: (msg: MeshMessage) => void,
    options?: SubscribeOptions,
  ): MeshSubscription {
    this.#check();
    checkSubject(subject, "subscribe to", true);
    const report = (error: unknown) => this.emit({ type: "error", error });
    let sub: Subscription;
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
      sub = this.nc.subscribe(subject, opts);
    } catch (err) {
      throw toMeshError(err, `Cannot subscribe to "${subject}"`);
    }
    return {
      subject,
      unsubscribe() {
        try {
          sub.unsubscribe();
        } catch {
          // closed already
        }
      },
    };
  }

  inbox(): string {
    return createInbox();
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
    const replicas = this.#replicas(options?.replicas);
    const deadline = performance.now() + 3 * (this.#options.connectTimeout ?? 10_000);
    const what = `Cannot open KV bucket "${bucket}"`;
    const kvm = new Kvm(this.js);
    const kv = await retry(
      () => kvm.create(bucket, { history, replicas, allow_direct: false }),
      isTemporaryJs,
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
      isTemporaryJs,
      deadline,
      what,
    );
    const serialized = info.config.num_replicas <= 1 || replicatedCasIsSafe(this.nc.info?.version);
    return new NatsKvBucket(this, kv, bucket, String(info.created), serialized);
  }

  #replicas(requested: number | undefined): number {
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
    for (const cancel of [...this.#inflight]) {
      cancel(new MeshError("closed", `Request of node "${this.node}" failed: connection closed`));
    }
    this.#deadlines.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

async function retry<T>(
  fn: () => Promise<T>,
  retryable: (err: unknown) => boolean,
  deadline: number,
  what: string,
): Promise<T> {
  for (let attempt = 0;; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const left = deadline - performance.now();
      if (!retryable(err) || left <= 0) throw toMeshError(err, what);
      await delay(Math.min(backoff(attempt), left));
    }
  }
}

const EMPTY = new Uint8Array(0);

class NatsKvBucket implements KvBucket {
  readonly name: string;
  readonly incarnation: string;
  readonly serializedCas: boolean;
  readonly #conn: NatsMeshConnection;
  readonly #kv: KV;
  readonly #prefix: string;

  constructor(
    conn: NatsMeshConnection,
    kv: KV,
    name: string,
    incarnation: string,
    serializedCas: boolean,
  ) {
    this.#conn = conn;
    this.#kv = kv;
    this.name = name;
    this.incarnation = incarnation;
    this.serializedCas = serializedCas;
    this.#prefix = `$KV.${name}.`;
  }

  #key(key: string): void {
    if (typeof key !== "string" || !/^[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*$/.test(key)) {
      throw new TypeError(`Cannot use KV key "${key}": tokens must match [A-Za-z0-9_=-]+`);
    }
  }

  #filter(filter: string): void {
    if (
      typeof filter !== "string" ||
      !/^([A-Za-z0-9_=-]+|\*)(\.([A-Za-z0-9_=-]+|\*))*(\.>)?$|^>$/.test(filter)
    ) throw new TypeError(`Cannot use KV key filter "${filter}": invalid pattern`);
  }

  /** Runs a KV call, retrying while nothing answers (no stream leader yet). */
  async #run<T>(what: string, fn: () => Promise<T>, retryTimeouts: boolean): Promise<T> {
    const conn = this.#conn;
    if (conn.nc.isClosed() || conn.nc.isDraining()) {
      throw new MeshError("closed", `${what}: connection closed`);
    }
    const deadline = performance.now() + (conn.options.kvRetry ?? 5000);
    return await retry(
      fn,
      (err) =>
        !conn.nc.isClosed() &&
        (isNoResponders(err) || (retryTimeouts && err instanceof natsErrors.TimeoutError)),
      deadline,
      what,
    );
  }

  /** Lets watches created before a write see it (their consumers exist first). */
  async #afterWatches(): Promise<void> {
    const set = startingWatches.get(this.name);
    if (!set || set.size === 0) return;
    const starting = [...set];
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(starting),
      new Promise((r) => timer = setTimeout(r, this.#conn.options.kvRetry ?? 5000)),
    ]);
    clearTimeout(timer);
  }

  async get(key: string): Promise<KvEntry | null> {
    this.#key(key);
    const e = await this.#run(
      `Cannot get "${key}" from bucket "${this.name}"`,
      () => this.#kv.get(key),
      true,
    );
    if (!e || e.operation !== "PUT") return null;
    return { key, value: e.value, revision: e.revision, operation: "PUT" };
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    this.#key(key);
    await this.#afterWatches();
    return await this.#run(
      `Cannot put "${key}" in bucket "${this.name}"`,
      () => this.#kv.put(key, value),
      false,
    );
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    this.#key(key);
    await this.#afterWatches();
    return await this.#run(
      `Cannot create "${key}" in bucket "${this.name}"`,
      () => this.#kv.create(key, value),
      false,
    );
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    this.#key(key);
    if (!(Number.isInteger(revision) && revision >= 0)) {
      throw new RangeError(`Cannot update "${key}" at revision ${revision}`);
    }
    await this.#afterWatches();
    return await this.#run(
      `Cannot update "${key}" in bucket "${this.name}" at revision ${revision}`,
      () => this.#kv.put(key, value, { previousSeq: revision }),
      false,
    );
  }

  async delete(key: string, options?: { revision?: number }): Promise<void> {
    this.#key(key);
    await this.#afterWatches();
    const h = natsHeaders();
    h.set("KV-Operation", "DEL");
    const expected = options?.revision;
    await this.#run(
      `Cannot delete "${key}" in bucket "${this.name}"`,
      () =>
        this.#conn.js.publish(
          this.#prefix + key,
          EMPTY,
          expected === undefined
            ? { headers: h }
            : { headers: h, expect: { lastSubjectSequence: expected } },
        ),
      false,
    );
  }

  async keys(filter = ">"): Promise<string[]> {
    this.#filter(filter);
    return await this.#run(`Cannot list keys of bucket "${this.name}"`, async () => {
      const out: string[] = [];
      for await (const k of await this.#kv.keys(filter)) out.push(k);
      return out;
    }, true);
  }

  watch(options?: { key?: string; initial?: boolean }): KvWatch {
    if (this.#conn.nc.isClosed() || this.#conn.nc.isDraining()) {
      throw new MeshError("closed", `Cannot watch bucket "${this.name}": connection closed`);
    }
    const key = options?.key ?? ">";
    this.#filter(key);
    return new NatsKvWatch(this.#conn, this.name, key, options?.initial ?? true);
  }
}

const HEARTBEAT_MS = 1000;

/**
 * Watches being set up in this process, by bucket: writes to that bucket from this process
 * wait for them (bounded), so a watch sees every write issued after `watch()` returned.
 */
const startingWatches = new Map<string, Set<Promise<void>>>();

/**
 * A watch: an ephemeral push consumer (no acks, flow control, 1 s heartbeats) that is
 * recreated from the last delivered revision when it goes silent, when a message is
 * missing, or after a reconnect.
 */
class NatsKvWatch implements KvWatch {
  readonly #conn: NatsMeshConnection;
  readonly #bucket: string;
  readonly #filter: string;
  readonly #initial: boolean;
  readonly #prefix: string;
  readonly #stream: string;
  #buffer: KvEntry[] = [];
  #waiter: ((r: IteratorResult<KvEntry>) => void) | undefined;
  #stopped = false;
  #gen = 0;
  #sub: Subscription | undefined;
  #lastSeq = 0;
  #baseline = false;
  #expected = 1;
  #initialLeft = 0;
  #held: Msg[] | undefined;
  #lastActive = performance.now();
  #timer: ReturnType<typeof setInterval>;
  #starting = false;
  #stopSleep: AbortController = new AbortController();
  readonly ready: Promise<void>;

  constructor(conn: NatsMeshConnection, bucket: string, filter: string, initial: boolean) {
    this.#conn = conn;
    this.#bucket = bucket;
    this.#filter = filter;
    this.#initial = initial;
    this.#prefix = `$KV.${bucket}.`;
    this.#stream = `KV_${bucket}`;
    conn.watches.add(this);
    this.#timer = setInterval(() => {
      if (this.#conn.connected && !this.#starting) {
        if (performance.now() - this.#lastActive > 3 * HEARTBEAT_MS) this.restart("silent");
      }
    }, HEARTBEAT_MS);
    this.ready = this.#start();
    let set = startingWatches.get(bucket);
    if (!set) startingWatches.set(bucket, set = new Set());
    const ready = this.ready;
    set.add(ready);
    ready.finally(() => {
      set.delete(ready);
      if (set.size === 0 && startingWatches.get(bucket) === set) startingWatches.delete(bucket);
    }).catch(() => {});
  }

  /** Recreates the consumer from the last delivered revision. */
  restart(_why: string): void {
    if (this.#stopped || this.#starting) return;
    this.#start().catch(() => {});
  }

  async #start(): Promise<void> {
    this.#starting = true;
    try {
      for (let attempt = 0; !this.#stopped; attempt++) {
        const gen = ++this.#gen;
        this.#sub?.unsubscribe();
        const inbox = createInbox();
        this.#expected = 1;
        this.#held = [];
        this.#lastActive = performance.now();
        this.#sub = this.#conn.nc.subscribe(inbox, {
          callback: (err, msg) => this.#onMessage(gen, err, msg),
        });
        const resume = this.#baseline || this.#lastSeq > 0;
        const policy = resume
          ? DeliverPolicy.StartSequence
          : this.#initial
          ? DeliverPolicy.LastPerSubject
          : DeliverPolicy.New;
        try {
          const jsm = await this.#conn.jsm();
          const ci = await jsm.consumers.add(this.#stream, {
            deliver_subject: inbox,
            deliver_policy: policy,
            ...(resume ? { opt_start_seq: this.#lastSeq + 1 } : {}),
            ack_policy: AckPolicy.None,
            filter_subject: this.#prefix + this.#filter,
            flow_control: true,
            idle_heartbeat: nanos(HEARTBEAT_MS),
            inactive_threshold: nanos(5000),
            mem_storage: true,
            num_replicas: 1,
          });
          if (gen !== this.#gen || this.#stopped) return;
          if (policy === DeliverPolicy.New) {
            this.#lastSeq = Math.max(this.#lastSeq, ci.delivered.stream_seq);
            this.#baseline = true;
          }
          this.#initialLeft = policy === DeliverPolicy.LastPerSubject ? ci.num_pending : 0;
          const held = this.#held ?? [];
          this.#held = undefined;
          this.#lastActive = performance.now();
          for (const m of held) this.#onMessage(gen, null, m);
          return;
        } catch {
          if (this.#conn.nc.isClosed()) return this.stop();
          try {
            await delay(backoff(attempt + 3), this.#stopSleep.signal);
          } catch {
            return;
          }
        }
      }
    } finally {
      this.#starting = false;
    }
  }

  #onMessage(gen: number, err: Error | null, msg: Msg): void {
    if (gen !== this.#gen || this.#stopped) return;
    if (err) return this.restart("error");
    if (this.#held) {
      this.#held.push(msg);
      return;
    }
    this.#lastActive = performance.now();
    const reply = msg.reply ?? "";
    if (!reply.startsWith("$JS.ACK.")) {
      let code = 0;
      try {
        code = msg.headers?.code ?? 0;
        if (code === 100) {
          if (reply) msg.respond(); // flow control
          const stalled = msg.headers?.get("Nats-Consumer-Stalled");
          if (stalled) this.#conn.nc.publish(stalled);
          return;
        }
      } catch {
        // malformed: ignore
      }
      if (code >= 400) this.restart("consumer gone");
      return;
    }
    // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>, or the v2 form
    // with <domain>.<account hash> after ACK and a random token at the end
    const t = reply.split(".");
    const o = t.length >= 12 ? 4 : 2;
    const sseq = Number(t[o + 3]);
    const dseq = Number(t[o + 4]);
    if (dseq !== this.#expected) return this.restart("gap");
    this.#expected++;
    if (sseq <= this.#lastSeq) return; // replayed after a restart
    this.#lastSeq = sseq;
    let operation: KvEntry["operation"] = "PUT";
    try {
      const op = msg.headers?.get("KV-Operation");
      if (op === "DEL" || op === "PURGE") operation = op;
    } catch {
      // malformed headers: a put
    }
    const inInitial = this.#initialLeft > 0;
    if (inInitial) this.#initialLeft--;
    if (inInitial && operation !== "PUT") return; // deleted keys are not "existing"
    const entry: KvEntry = {
      key: msg.subject.slice(this.#prefix.length),
      value: operation === "PUT" ? msg.data : EMPTY,
      revision: sseq,
      operation,
    };
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter({ value: entry, done: false });
    } else this.#buffer.push(entry);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#gen++;
    clearInterval(this.#timer);
    this.#stopSleep.abort();
    this.#conn.watches.delete(this);
    try {
      this.#sub?.unsubscribe();
    } catch {
      // closed already
    }
    this.#buffer = [];
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<KvEntry> {
    return {
      next: (): Promise<IteratorResult<KvEntry>> => {
        const e = this.#buffer.shift();
        if (e) return Promise.resolve({ value: e, done: false });
        if (this.#stopped) return Promise.resolve({ value: undefined, done: true });
        if (this.#waiter) {
          return Promise.reject(new TypeError("Cannot call next() of a KV watch concurrently"));
        }
        return new Promise((resolve) => this.#waiter = resolve);
      },
      return: (): Promise<IteratorResult<KvEntry>> => {
        this.stop();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
