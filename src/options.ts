/**
 * The options of a node (`createSystem(options)`) and the one function that turns them into a
 * validated node configuration ({@link nodeConfig}): every check of the options is here, made
 * before anything is opened or connected.
 *
 * @module
 */

import type { ActorDefinition, AnyActorTypes } from "./actor/define.ts";
import { type AuthOptions, createVerifier } from "./auth/verify.ts";
import { codecFor, DEFAULT_MAX_PAYLOAD, msgpack } from "./codec/mod.ts";
import type { Codec } from "./codec/types.ts";
import type { ConfigOptions } from "./config/types.ts";
import { DEFAULT_REPLY_PREFIXES } from "./dispatch/subjects.ts";
import type { NodeAuth } from "./dispatch/access.ts";
import type { Journal } from "./journal/types.ts";
import type { Mesh } from "./mesh/types.ts";
import type { StoreBackend } from "./store/types.ts";
import { type Clock, systemClock } from "./util/clock.ts";
import { consoleLogger, type Logger, type LogLevel } from "./util/log.ts";

/** Options of `createSystem` (every option and its default: docs/guide/options.md). */
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
   * Where this node reads time and sets timers: call deadlines, idle passivation, reminders
   * (cron too), membership and lease timing, config debounce, store TTLs and the purge, stream
   * and drain bounds. Tests pass `virtualClock()` from `./testing` and move time with
   * `advance(ms)`. The NATS client's own timers (pings, reconnects, request timeouts on the
   * wire) and the libSQL journal's lock waits stay on real time: they follow a real network and
   * disk. @default {systemClock: the host's time}
   */
  clock?: Clock;
}

/** A node's configuration: {@link SystemOptions} validated, with every default applied. */
export interface NodeConfig {
  /** This node's id. */
  readonly node: string;
  readonly log: Logger;
  /** The hosted types, by name. */
  readonly defs: ReadonlyMap<string, ActorDefinition<AnyActorTypes>>;
  /** Where events live: a URL to open, a journal, or undefined (a memory journal). */
  readonly journal: string | Journal | undefined;
  /** The mesh, or undefined (a private in-process mesh). */
  readonly mesh: Mesh | undefined;
  /** Largest payload, bytes (the mesh's own limit may lower it). */
  readonly maxPayload: number;
  /** Codec of the messages this node sends. */
  readonly wireCodec: Codec;
  readonly askTimeout: number;
  /** Membership/ownership lease time to live, ms, or undefined (the mesh's). */
  readonly leaseTtl: number | undefined;
  /** Whether this node runs the reminder service (when it hosts types). */
  readonly reminders: boolean;
  readonly maxActivations: number;
  readonly drainTimeout: number;
  readonly store: StoreBackend | undefined;
  readonly config: ConfigOptions | undefined;
  /** Auth: the verifier, system rules and topic rules, when the node has it on. */
  readonly auth: NodeAuth | undefined;
  readonly replyPrefixes: readonly string[];
  readonly serviceDiscovery: boolean;
  /** Where the node reads time and sets timers. */
  readonly clock: Clock;
}

const TYPE_NAME = /^[a-z][a-z0-9_-]*$/;

/**
 * Validates `options` and applies the defaults: a bad option throws here (`TypeError`,
 * `RangeError`), before a journal is opened or a mesh connected.
 */
export function nodeConfig(options: SystemOptions): NodeConfig {
  const node = options.node ?? `node-${crypto.randomUUID().slice(0, 8)}`;
  if (!/^[A-Za-z0-9_-]+$/.test(node)) {
    throw new TypeError(`Node id must match /^[A-Za-z0-9_-]+$/, got "${node}"`);
  }
  const defs = new Map<string, ActorDefinition<AnyActorTypes>>();
  for (const def of options.actors ?? []) {
    if (!def || typeof def.name !== "string" || !TYPE_NAME.test(def.name) || !def.handlers) {
      throw new TypeError("createSystem(): every entry of `actors` must come from defineActor()");
    }
    if (defs.has(def.name)) {
      throw new TypeError(`createSystem(): actor type "${def.name}" is listed twice`);
    }
    if (def.access && !options.auth) {
      throw new TypeError(
        `createSystem(): actor type "${def.name}" declares access rules, so the node needs auth`,
      );
    }
    defs.set(def.name, def);
  }
  const ct = options.contentType ?? msgpack.contentType;
  const wireCodec = codecFor(ct);
  if (!wireCodec) throw new TypeError(`No codec for content type "${ct}"`);
  const maxActivations = options.maxActivations ?? 100_000;
  if (!(maxActivations >= 1)) {
    throw new RangeError(`maxActivations must be at least 1, got ${maxActivations}`);
  }
  const maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  if (!(maxPayload > 0)) throw new RangeError(`maxPayload must be positive, got ${maxPayload}`);
  const clock = options.clock ?? systemClock;
  const auth = options.auth && {
    verifier: createVerifier(options.auth, clock),
    rules: options.auth.rules ?? [],
    topics: options.auth.topics ?? [],
  };
  return {
    node,
    log: typeof options.logger === "object"
      ? options.logger
      : consoleLogger(options.logger ?? "warn", node),
    defs,
    journal: options.journal,
    mesh: options.mesh,
    maxPayload,
    wireCodec,
    askTimeout: options.askTimeout ?? 30_000,
    leaseTtl: options.leaseTtl,
    reminders: options.reminders !== false,
    maxActivations,
    drainTimeout: options.drainTimeout ?? 10_000,
    store: options.store,
    config: options.config,
    auth,
    replyPrefixes: options.replyPrefixes ?? DEFAULT_REPLY_PREFIXES,
    serviceDiscovery: options.serviceDiscovery !== false,
    clock,
  };
}
