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
 * Modules: this one (options, `natsMesh`, connecting, the socket guard), `connection.ts`
 * (`NatsMeshConnection`), `kv.ts` (buckets), `kv_watch.ts` (watches), `_util.ts` (shared
 * helpers).
 *
 * @module
 */

import { connect as tcpConnect } from "@nats-io/transport-node";
import {
  type ConnectionOptions,
  credsAuthenticator,
  errors as natsErrors,
  nkeyAuthenticator,
  nkeys,
  wsconnect,
  type WsSocketFactory,
} from "@nats-io/nats-core";
import {
  delay,
  installSocketGuard,
  type Mesh,
  type MeshConnection,
  MeshError,
  systemClock,
} from "../../spi.ts";
import { backoff } from "./_util.ts";
import { NatsMeshConnection } from "./connection.ts";
import { checkDurableOptions } from "./durable.ts";
import type { NatsMeshOptions } from "./options.ts";

/**
 * The server refused the credentials (wrong user, password, token, NKey or creds, or an
 * expired user JWT) or the options name none. `connect` fails with it at once, without
 * waiting for `connectTimeout`.
 */
export class NatsAuthError extends Error {
  /** The server URLs that were tried. */
  readonly servers: string[];
  /**
   * Makes the error.
   *
   * @param message Details.
   * @param servers The server URLs that were tried.
   * @param cause The client's error.
   */
  constructor(message: string, servers: string[], cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "NatsAuthError";
    this.servers = servers;
  }
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
  checkAuthOptions(options);
  checkDurableOptions(options.durableTopics);
  return {
    kind: "nats",
    leaseTtl,
    prefix,
    connect: ({ node, signal }) => connectNode(servers, transport, options, node, signal),
  };
}

const INBOX_PREFIX = /^[^\s.*>]+(\.[^\s.*>]+)*$/;

/** Throws a TypeError for contradicting or malformed credential options (never naming secrets). */
function checkAuthOptions(options: NatsMeshOptions): void {
  const ways = [
    options.user !== undefined || options.pass !== undefined ? "user/pass" : undefined,
    options.token !== undefined ? "token" : undefined,
    options.nkeySeed !== undefined ? "nkeySeed" : undefined,
    options.credsFile !== undefined ? "credsFile" : undefined,
    options.creds !== undefined ? "creds" : undefined,
  ].filter((w) => w !== undefined);
  if (ways.length > 1) {
    throw new TypeError(`Cannot combine ${ways.join(" and ")}: use one way to authenticate`);
  }
  if (options.pass !== undefined && options.user === undefined) {
    throw new TypeError("Cannot use `pass` without `user`");
  }
  if (options.nkeySeed !== undefined) {
    let ok = false;
    try {
      ok = nkeys.fromSeed(new TextEncoder().encode(options.nkeySeed)).getPublicKey()
        .startsWith("U");
    } catch {
      // not a seed
    }
    if (!ok) throw new TypeError("Cannot use `nkeySeed`: not an NKey user seed (SU…)");
  }
  if (options.inboxPrefix !== undefined && !INBOX_PREFIX.test(options.inboxPrefix)) {
    throw new TypeError(
      `Cannot use inboxPrefix ${
        JSON.stringify(options.inboxPrefix)
      }: dot-separated tokens without wildcards or spaces`,
    );
  }
}

/** The connection options that authenticate (and set the inbox prefix); reads `credsFile`. */
async function authOptions(options: NatsMeshOptions): Promise<Partial<ConnectionOptions>> {
  const out: Partial<ConnectionOptions> = {};
  const enc = new TextEncoder();
  if (options.user !== undefined) out.user = options.user;
  if (options.pass !== undefined) out.pass = options.pass;
  if (options.token !== undefined) out.token = options.token;
  if (options.nkeySeed !== undefined) {
    out.authenticator = nkeyAuthenticator(enc.encode(options.nkeySeed));
  }
  if (options.creds !== undefined) {
    out.authenticator = credsAuthenticator(enc.encode(options.creds));
  }
  if (options.credsFile !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(options.credsFile);
    } catch (err) {
      throw new TypeError(
        `Cannot read the NATS creds file "${options.credsFile}": ${
          err instanceof Error ? err.message : String(err)
        }`,
        { cause: err },
      );
    }
    out.authenticator = credsAuthenticator(enc.encode(text));
  }
  if (options.inboxPrefix !== undefined) out.inboxPrefix = options.inboxPrefix;
  return out;
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
  Object.assign(base, await authOptions(options));
  if (options.tls !== undefined) base.tls = options.tls;
  else if (servers.some((s) => /^tls:\/\//i.test(s))) base.tls = {};
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
      if (
        err instanceof natsErrors.AuthorizationError ||
        err instanceof natsErrors.UserAuthenticationExpiredError
      ) {
        throw new NatsAuthError(
          `Cannot connect node "${node}" to NATS at ${servers.join(", ")}: the server refused ` +
            `its credentials (${err.message})`,
          servers,
          err,
        );
      }
    }
    await delay(
      systemClock,
      Math.min(backoff(attempt++), Math.max(0, deadline - performance.now())),
      signal,
    );
  }
  throw new MeshError(
    "timeout",
    `Cannot connect node "${node}" to NATS at ${servers.join(", ")} within ${
      options.connectTimeout ?? 10_000
    } ms: ${last instanceof Error ? last.message : String(last)}`,
    last,
  );
}

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
