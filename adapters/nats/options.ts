/**
 * The options of `natsMesh()`, apart from the mesh so that the connection and the mesh can
 * both use them without importing each other.
 *
 * @module
 */

/**
 * Options of `natsMesh()`.
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
  /** User name (with `pass`). Use one way to authenticate: user/pass, token, NKey or creds. */
  user?: string;
  /** Password of `user`. */
  pass?: string;
  /** Token. */
  token?: string;
  /**
   * NKey seed of an NKey user (`SU…`), for a server whose `authorization` lists
   * `{ nkey: "U…" }`: the client signs the server's nonce, the seed never leaves the process.
   */
  nkeySeed?: string;
  /**
   * Path of a `.creds` file (a user JWT and its NKey seed, as written by `nsc`), for a
   * server in operator (JWT) mode; read once per connect (`--allow-read` on that path).
   */
  credsFile?: string;
  /** The content of a `.creds` file (instead of `credsFile`). */
  creds?: string;
  /**
   * Prefix of the connection's inbox subjects (reply subscriptions of requests, stream
   * inboxes, JetStream replies and KV watch deliveries). A server that limits a user to
   * subscribing `<inboxPrefix>.>` (see `natsAuthConfig`) needs it set to the same value.
   * @default {"_INBOX"}
   */
  inboxPrefix?: string;
  /**
   * TLS options for TCP connections (`wss://` URLs use the runtime's TLS). Setting it (even
   * to `{}`) makes the client refuse a server that does not offer TLS; a `tls://` URL among
   * `servers` does the same (natsMesh then sets `{}` when this is unset), so that a server
   * impersonating a plain one never receives the credentials in clear. Without either, the
   * client uses TLS only when the server asks for it.
   */
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
   * size (and 5). Before nats-server 2.9.21 (see `replicatedCasIsSafe`) replicated
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
  /**
   * The JetStream stream behind durable topics (`publish(…, { durable: true })`,
   * `subscribe(…, { durable })`): one stream per prefix, `<prefix>_topics`, made by the first
   * node that uses it. A stream that exists keeps its settings (change them with `nats stream
   * edit`). @default {{}} (see {@link NatsDurableTopicsOptions})
   */
  durableTopics?: NatsDurableTopicsOptions;
}

/**
 * Settings of the JetStream stream behind durable topics, used when a node creates it.
 *
 * @example
 * ```ts
 * import { natsMesh } from "@troupe/troupe/nats";
 *
 * const mesh = natsMesh({
 *   servers: "nats://127.0.0.1:4222",
 *   durableTopics: { maxAge: 24 * 3_600_000, maxBytes: 256 * 1024 * 1024, replicas: 3 },
 * });
 * ```
 */
export interface NatsDurableTopicsOptions {
  /** How long a message is kept, ms. @default {604800000} (7 days) */
  maxAge?: number;
  /**
   * Most bytes kept; past it the oldest messages go. JetStream reserves it in the account's
   * store when the stream is made (a server with less room refuses it: `NatsSetupError`
   * `"jetstream_no_room"`), which keeps durable topics from filling the store that the
   * directory's buckets need: set it in production. @default {no limit: `maxAge` and the
   * server's own limits bound the stream}
   */
  maxBytes?: number;
  /**
   * How long a publish's dedup id is remembered, ms (JetStream's `duplicate_window`).
   * @default {120000}
   */
  duplicateWindow?: number;
  /**
   * Replicas of the stream (and its consumers). @default {3 when the client knows of 3 or
   * more servers, else 1 (like the KV buckets)}
   */
  replicas?: number;
  /** `"file"` (kept across server restarts) or `"memory"`. @default {"file"} */
  storage?: "file" | "memory";
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
