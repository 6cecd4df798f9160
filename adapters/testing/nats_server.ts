/**
 * A throw-away nats-server (one server or a three-server cluster) for tests and benchmarks:
 * free loopback ports, a temporary JetStream store, readiness checks through the monitoring
 * port, and helpers to kill and restart single servers.
 *
 * @example
 * ```ts
 * import { startNatsCluster } from "./nats_server.ts";
 *
 * await using cluster = await startNatsCluster({ servers: 3 });
 * console.log(cluster.urls); // ["nats://127.0.0.1:…", …]
 * ```
 *
 * @module
 */

import { installSocketGuard } from "../../spi.ts";

/** Options of {@link startNatsCluster}. */
export interface NatsClusterOptions {
  /** How many servers: one, or a three-server cluster. @default {1} */
  servers?: 1 | 3;
  /** Enable JetStream (needed for KV). @default {true} */
  jetstream?: boolean;
  /** Open a WebSocket listener (plain `ws://`) on every server. @default {true} */
  websocket?: boolean;
  /** Require this user name (with `pass`). */
  user?: string;
  /** Password of `user`. */
  pass?: string;
  /** Require this token (instead of user/pass). */
  token?: string;
  /**
   * Extra configuration text appended to every server's generated configuration: an
   * `authorization { … }` or `accounts { … }` section (from `natsAuthConfig`), a `tls { … }`
   * section, and so on. Use it instead of `user`/`pass`/`token`, not with them.
   */
  config?: string;
  /** The servers' `max_payload`, in bytes. @default {1048576} */
  maxPayload?: number;
  /** How long to wait for the cluster to be ready, in ms. @default {20000} */
  timeout?: number;
  /** The nats-server binary. @default {the result of findNatsServer()} */
  binary?: string;
}

/** One server of a {@link NatsCluster}. */
export interface ServerHandle {
  /** Its `server_name`. */
  readonly name: string;
  /** Its client URL (`nats://127.0.0.1:port`). */
  readonly url: string;
  /** Its WebSocket URL (`ws://127.0.0.1:port`), when enabled. */
  readonly wsUrl: string | undefined;
  /** Its monitoring URL (`http://127.0.0.1:port`). */
  readonly monitorUrl: string;
  /** Process id of the running server, or undefined while stopped. */
  readonly pid: number | undefined;
  /** Whether the process is running. */
  readonly running: boolean;
  /** The last lines the server wrote to stderr. */
  logTail(): string;
  /** Sends `signal` (default `SIGKILL`) and waits for the process to exit. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Starts it again on the same ports and store (kills it first if running); waits until ready. */
  restart(): Promise<void>;
}

/** A running set of servers, see {@link startNatsCluster}. */
export interface NatsCluster extends AsyncDisposable {
  /** Client URLs, one per server (`nats://127.0.0.1:port`). */
  readonly urls: string[];
  /** WebSocket URLs, one per server (`ws://127.0.0.1:port`); empty when disabled. */
  readonly wsUrls: string[];
  /** The servers. */
  readonly servers: ServerHandle[];
  /** Stops every server, waits for them to exit and removes the temporary directory. */
  stop(): Promise<void>;
}

const TAIL_BYTES = 8192;

/**
 * Every server process started and not yet reaped, and every temp dir not yet removed:
 * killed and removed when the process exits, even if a test forgot to stop its cluster
 * (or was filtered out).
 */
const live = new Set<Deno.ChildProcess>();
const dirs = new Set<string>();
globalThis.addEventListener("unload", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone already
    }
  }
  for (const dir of dirs) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // gone already
    }
  }
});

/**
 * Finds the nats-server binary: `$NATS_SERVER`, then `/usr/sbin/nats-server`, then `PATH`.
 *
 * @example
 * ```ts
 * import { findNatsServer } from "./nats_server.ts";
 * const bin = findNatsServer(); // "/usr/sbin/nats-server"
 * ```
 * @throws {Error} When none is found, with how to install it.
 */
export function findNatsServer(): string {
  const candidates: string[] = [];
  const env = Deno.env.get("NATS_SERVER");
  if (env) candidates.push(env);
  candidates.push("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server");
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir) candidates.push(`${dir}/nats-server`);
  }
  for (const path of candidates) {
    try {
      const info = Deno.statSync(path);
      if (info.isFile) return path;
    } catch {
      // not there
    }
  }
  throw new Error(
    "Cannot find nats-server (looked at $NATS_SERVER, /usr/sbin/nats-server and PATH): " +
      "install it with `apt-get install -y nats-server` (Debian/Ubuntu) or download a release " +
      "from https://github.com/nats-io/nats-server/releases, or set NATS_SERVER to its path",
  );
}

/** Returns a loopback TCP port that was free a moment ago. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

interface Ports {
  client: number;
  http: number;
  cluster: number;
  ws: number;
}

class ServerProcess implements ServerHandle {
  readonly name: string;
  readonly #binary: string;
  readonly #config: string;
  readonly #ports: Ports;
  readonly #websocket: boolean;
  #child: Deno.ChildProcess | undefined;
  #status: Promise<Deno.CommandStatus> | undefined;
  #drain: Promise<void> | undefined;
  #tail = "";
  #exited = true;
  /** Set by the cluster: how to wait until this server is ready. */
  ready: (server: ServerProcess, deadline: number) => Promise<void> = () => Promise.resolve();

  constructor(name: string, binary: string, config: string, ports: Ports, websocket: boolean) {
    this.name = name;
    this.#binary = binary;
    this.#config = config;
    this.#ports = ports;
    this.#websocket = websocket;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.#ports.client}`;
  }
  get wsUrl(): string | undefined {
    return this.#websocket ? `ws://127.0.0.1:${this.#ports.ws}` : undefined;
  }
  get monitorUrl(): string {
    return `http://127.0.0.1:${this.#ports.http}`;
  }
  get pid(): number | undefined {
    return this.#child?.pid;
  }
  get running(): boolean {
    return this.#child !== undefined;
  }
  logTail(): string {
    return this.#tail;
  }

  spawn(): void {
    if (this.#child) throw new Error(`Server "${this.name}" is already running`);
    this.#tail = "";
    const child = new Deno.Command(this.#binary, {
      args: ["-c", this.#config],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    live.add(child);
    this.#exited = false;
    this.#status = child.status.finally(() => {
      this.#exited = true;
      live.delete(child);
    });
    this.#drain = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of child.stderr) {
          this.#tail = (this.#tail + decoder.decode(chunk, { stream: true })).slice(-TAIL_BYTES);
        }
      } catch {
        // the pipe closed
      }
    })();
  }

  /** Whether the process has exited. */
  exited(): boolean {
    return this.#exited;
  }

  async kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    try {
      child.kill(signal);
    } catch {
      // already exited
    }
    await this.#status;
    await this.#drain;
    this.#child = undefined;
    this.#status = undefined;
    this.#drain = undefined;
  }

  async restart(): Promise<void> {
    await this.kill("SIGKILL");
    this.spawn();
    await this.ready(this, performance.now() + 20_000);
  }
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: res.status, body };
}

/** Checks one server once; returns what is still missing, or undefined when ready. */
async function notReady(
  server: ServerProcess,
  peers: number,
  jetstream: boolean,
): Promise<string | undefined> {
  try {
    const health = await getJson(`${server.monitorUrl}/healthz`);
    if (health.status !== 200) return `healthz: ${JSON.stringify(health.body)}`;
    if (peers > 0) {
      const routez = await getJson(`${server.monitorUrl}/routez`);
      const n = (routez.body as { num_routes?: number }).num_routes ?? 0;
      if (n < peers) return `routes: ${n} of ${peers}`;
      if (jetstream) {
        const jsz = await getJson(`${server.monitorUrl}/jsz`);
        const leader = (jsz.body as { meta_cluster?: { leader?: string } }).meta_cluster?.leader;
        if (!leader) return "JetStream has no meta leader yet";
      }
    }
    return undefined;
  } catch (err) {
    return `monitoring port: ${err instanceof Error ? err.message : String(err)}`;
  }
}

async function waitReady(
  server: ServerProcess,
  peers: number,
  jetstream: boolean,
  deadline: number,
): Promise<void> {
  let missing: string | undefined = "not checked";
  while (performance.now() < deadline) {
    if (server.exited()) {
      throw new Error(
        `nats-server "${server.name}" exited during start-up; stderr tail:\n${server.logTail()}`,
      );
    }
    missing = await notReady(server, peers, jetstream);
    if (missing === undefined) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `nats-server "${server.name}" not ready in time (${missing}); stderr tail:\n${server.logTail()}`,
  );
}

function quote(value: string): string {
  return JSON.stringify(value);
}

function configFor(
  name: string,
  ports: Ports,
  allPorts: Ports[],
  dir: string,
  options: NatsClusterOptions,
): string {
  const lines = [
    `server_name: ${quote(name)}`,
    `listen: "127.0.0.1:${ports.client}"`,
    `http: "127.0.0.1:${ports.http}"`,
    `max_payload: ${options.maxPayload ?? 1048576}`,
  ];
  if (options.jetstream ?? true) {
    lines.push(
      `jetstream {`,
      `  store_dir: ${quote(`${dir}/${name}`)}`,
      `  max_memory_store: 268435456`,
      `  max_file_store: 1073741824`,
      `}`,
    );
  }
  if (options.token !== undefined) {
    lines.push(`authorization { token: ${quote(options.token)} }`);
  } else if (options.user !== undefined) {
    lines.push(
      `authorization { user: ${quote(options.user)}, password: ${quote(options.pass ?? "")} }`,
    );
  }
  if (allPorts.length > 1) {
    const routes = allPorts.filter((p) => p !== ports).map((p) =>
      quote(`nats-route://127.0.0.1:${p.cluster}`)
    );
    lines.push(
      `cluster {`,
      `  name: "troupe-test"`,
      `  listen: "127.0.0.1:${ports.cluster}"`,
      `  routes: [${routes.join(", ")}]`,
      `}`,
    );
  }
  if (options.websocket ?? true) {
    lines.push(`websocket { listen: "127.0.0.1:${ports.ws}", no_tls: true }`);
  }
  if (options.config !== undefined) lines.push(options.config);
  return lines.join("\n") + "\n";
}

/**
 * Starts a throw-away nats-server, or a three-server cluster, on free loopback ports with a
 * temporary store directory, and waits until it is ready (for a cluster: routes up and a
 * JetStream meta leader elected). Stop it with `stop()` or `await using`.
 *
 * @example
 * ```ts
 * import { startNatsCluster } from "./nats_server.ts";
 *
 * const cluster = await startNatsCluster({ servers: 3, websocket: false });
 * try {
 *   await cluster.servers[0]!.kill();     // SIGKILL
 *   await cluster.servers[0]!.restart();  // same ports, same store
 * } finally {
 *   await cluster.stop();
 * }
 * ```
 */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  // Tests kill servers under live NATS clients: keep late socket resets from ending the run.
  installSocketGuard();
  if (options.config !== undefined && (options.user ?? options.token) !== undefined) {
    throw new TypeError("Cannot combine `config` with `user`/`token`: put the auth in `config`");
  }
  const binary = options.binary ?? findNatsServer();
  const count = options.servers ?? 1;
  const jetstream = options.jetstream ?? true;
  const websocket = options.websocket ?? true;
  const timeout = options.timeout ?? 20_000;
  const dir = await Deno.makeTempDir({ prefix: "troupe-nats-" });
  dirs.add(dir);
  let lastError: unknown;
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      const allPorts: Ports[] = [];
      for (let i = 0; i < count; i++) {
        allPorts.push({
          client: freePort(),
          http: freePort(),
          cluster: freePort(),
          ws: freePort(),
        });
      }
      const servers: ServerProcess[] = [];
      for (let i = 0; i < count; i++) {
        const name = `n${i + 1}`;
        const ports = allPorts[i]!;
        const config = `${dir}/${name}.conf`;
        await Deno.writeTextFile(config, configFor(name, ports, allPorts, dir, options));
        const server = new ServerProcess(name, binary, config, ports, websocket);
        server.ready = (s, deadline) => waitReady(s, count - 1, jetstream, deadline);
        servers.push(server);
      }
      try {
        for (const s of servers) s.spawn();
        const deadline = performance.now() + timeout;
        await Promise.all(servers.map((s) => s.ready(s, deadline)));
        return makeCluster(servers, dir);
      } catch (err) {
        lastError = err;
        await Promise.all(servers.map((s) => s.kill()));
        const inUse = servers.some((s) => /address already in use/i.test(s.logTail()));
        if (!inUse) break;
        // a port was taken between choosing and binding it: choose again
        for (let i = 0; i < count; i++) {
          await Deno.remove(`${dir}/n${i + 1}`, { recursive: true }).catch(() => {});
        }
      }
    }
  } catch (err) {
    lastError = err;
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  dirs.delete(dir);
  throw lastError;
}

function makeCluster(servers: ServerProcess[], dir: string): NatsCluster {
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await Promise.all(servers.map((s) => s.kill("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      dirs.delete(dir);
    })();
    return stopped;
  };
  return {
    urls: servers.map((s) => s.url),
    wsUrls: servers.flatMap((s) => s.wsUrl === undefined ? [] : [s.wsUrl]),
    servers,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
