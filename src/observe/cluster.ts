/**
 * `system.cluster`: the cluster's own report of itself, over the mesh. Each node answers for
 * itself on its control subjects (`<prefix>.c.obs.<node>.stats`, `<prefix>.c.obs.<node>.inspect`, nodes
 * only; see control.ts), and {@link clusterClient} asks every live node and puts the answers
 * together. The dashboard reads it; so can any other tool.
 *
 * Control messages are MessagePack: a request's body is its parameters, a reply's body
 * `{ ok: value }` or `{ error: { code, message, data? } }`.
 *
 * @module
 */

import { msgpack } from "../codec/mod.ts";
import type { Codec } from "../codec/types.ts";
import type { NodeInfo } from "../directory/types.ts";
import {
  ActorError,
  fromWireError,
  TimeoutError,
  UnavailableError,
  UnknownActorTypeError,
  type WireError,
} from "../errors.ts";
import { encodeToken } from "../mesh/subject.ts";
import { type MeshConnection, MeshError } from "../mesh/types.ts";
import type { RecentError } from "./node.ts";
import type { Clock } from "../util/clock.ts";

/** One actor type on one node. */
export interface TypeReport {
  /** Actor type. */
  readonly type: string;
  /** Whether it is a stateless worker type. */
  readonly stateless: boolean;
  /** Active actors of the type here now (a worker type: messages running). */
  readonly activations: number;
  /** Messages waiting in their mailboxes (a worker type: its queue). */
  readonly queued: number;
  /** Messages handled here since the node started. */
  readonly messages: number;
  /** Messages handled per second, over about the last five seconds. */
  readonly rate: number;
  /** Of those messages, how many ended with an error. */
  readonly errors: number;
  /** Total time spent handling them, ms. */
  readonly busyMs: number;
  /** The last error, `code: message`. */
  readonly lastError?: string;
}

/** A lease (or leadership) a node holds. */
export interface LeaseReport {
  /** The lease name. */
  readonly name: string;
  /** Its fencing token. */
  readonly token: number;
}

/** A projection started on a node (`system.projection`). */
export interface ProjectionReport {
  /** Its name. */
  readonly name: string;
  /** Whether this node runs it now (else it stands by). */
  readonly running: boolean;
  /** How far behind the journal it is, ms (0 where it does not run; see `Projection.lag`). */
  readonly lag: number;
  /** The position of the last event it handled on this node. */
  readonly position?: string;
}

/** What a node reports about itself. */
export interface NodeStats {
  /** The node id. */
  readonly id: string;
  /** Actor types it hosts (empty for a client). */
  readonly types: readonly string[];
  /** When it started, ms since the epoch. */
  readonly since: number;
  /** `running`, `fenced` (its lease lapsed), `closing` or `closed`. */
  readonly status: string;
  /** When this report was made, ms since the epoch (the node's clock). */
  readonly at: number;
  /** Its hosted types, with their counts. */
  readonly actors: readonly TypeReport[];
  /** Its recent errors, newest first: calls it sent that failed, turns it ran that failed. */
  readonly errors: readonly RecentError[];
  /** Leases it holds (reminder and user elections included). */
  readonly leases: readonly LeaseReport[];
  /** The projections started on it, running or standing by. */
  readonly projections: readonly ProjectionReport[];
}

/** The whole cluster, as its nodes report it. */
export interface ClusterStats {
  /** When the reports were gathered, ms since the epoch. */
  readonly at: number;
  /** The reports of the nodes that answered, by node id. */
  readonly nodes: readonly NodeStats[];
  /** Live nodes (in the membership) that did not answer in time. */
  readonly unreachable: readonly string[];
}

/** An event of an actor's log. */
export interface ActorEvent {
  /** Position in the log. */
  readonly seq: number;
  /** Event type. */
  readonly type: string;
  /** Payload, upcast to the current version. */
  readonly payload: unknown;
  /** When it was appended. */
  readonly at: Date;
}

/** One actor, as the node that runs it (or a host of its type) sees it. */
export interface ActorReport {
  /** Actor type. */
  readonly type: string;
  /** Actor id. */
  readonly id: string;
  /** The node it is active on now, if any. */
  readonly node: string | undefined;
  /** The seq of its last event (0: none). */
  readonly seq: number;
  /** Messages waiting in its mailbox (when active on the node that answered). */
  readonly queued: number;
  /** Its last events, oldest first. */
  readonly events: readonly ActorEvent[];
  /** The node that answered. */
  readonly answeredBy: string;
}

/** Options of {@link Cluster.stats} and {@link Cluster.node}. */
export interface ClusterOptions {
  /** How long to wait for each node's answer, ms. @default {2000} */
  timeout?: number;
}

/** Options of {@link Cluster.inspect}. */
export interface InspectOptions extends ClusterOptions {
  /** How many of its last events to return (at most 1000). @default {20} */
  events?: number;
}

/**
 * What the cluster's nodes report, asked over the mesh (`system.cluster`).
 *
 * @example
 * ```ts
 * import { createSystem, defineActor } from "@troupe/troupe";
 * const Counter = defineActor({
 *   name: "counter",
 *   initialState: () => ({ n: 0 }),
 *   events: { added: (s, e: { by: number }) => ({ n: s.n + e.by }) },
 *   handlers: { add: (ctx, by: number) => void ctx.emit("added", { by }) },
 * });
 * const system = await createSystem({ actors: [Counter] });
 * await system.ref(Counter, "c1").ask("add", 2);
 * const { nodes } = await system.cluster.stats();
 * console.log(nodes[0]!.actors[0]!.activations); // 1
 * const c1 = await system.cluster.inspect("counter", "c1");
 * console.log(c1.node, c1.seq, c1.events); // the node id, 1, [{ seq: 1, type: "added", … }]
 * await system.close();
 * ```
 */
export interface Cluster {
  /** Every live node's report (nodes that do not answer in time are listed as unreachable). */
  stats(options?: ClusterOptions): Promise<ClusterStats>;
  /** One node's report; rejects with `unavailable` when it does not answer. */
  node(id: string, options?: ClusterOptions): Promise<NodeStats>;
  /**
   * Where actor `type/id` runs, its seq and its last events, answered by the node that runs
   * it, or by a host of its type when it is not active. Rejects with `unknown_actor_type`
   * when no live node hosts the type.
   */
  inspect(type: string, id: string, options?: InspectOptions): Promise<ActorReport>;
}

const DEFAULT_TIMEOUT = 2_000;
/** Events an inspection returns by default, and at most. */
export const DEFAULT_EVENTS = 20;
/** @see DEFAULT_EVENTS */
export const MAX_EVENTS = 1_000;

/** The control subject of `node` for `op`. */
export function controlSubject(
  prefix: string,
  node: string,
  op: "stats" | "inspect" | "*",
): string {
  return `${prefix}.c.obs.${encodeToken(node)}.${op}`;
}

/** What {@link clusterClient} needs from its node. */
export interface ClusterClientDeps {
  readonly prefix: string;
  readonly conn: MeshConnection;
  /** Live nodes now. */
  nodes(): NodeInfo[];
  /** Live nodes hosting `type`. */
  hostsOf(type: string): string[];
  /** The node where `type/id` is active, if any. */
  locate(type: string, id: string): Promise<string | undefined>;
  /** The node's clock (the time a report was made). */
  readonly clock: Clock;
}

/** A {@link Cluster} that asks the nodes over the mesh. */
export function clusterClient(d: ClusterClientDeps): Cluster {
  const codec: Codec = msgpack;
  const ask = async (
    node: string,
    op: "stats" | "inspect",
    params: unknown,
    timeout: number,
  ): Promise<unknown> => {
    let reply;
    try {
      reply = await d.conn.request(controlSubject(d.prefix, node, op), codec.encode(params), {
        timeout,
      });
    } catch (err) {
      if (err instanceof MeshError && err.code === "timeout") {
        throw new TimeoutError(`Node "${node}" did not answer within ${timeout} ms`, {
          cause: err,
        });
      }
      throw new UnavailableError(`Node "${node}" could not be asked: ${String(err)}`, {
        cause: err,
      });
    }
    const body = codec.decode(reply.data) as { ok?: unknown; error?: WireError } | null;
    if (body && typeof body === "object" && "error" in body && body.error) {
      throw fromWireError(body.error);
    }
    if (!body || typeof body !== "object" || !("ok" in body)) {
      throw new UnavailableError(`Node "${node}" sent a malformed control reply`);
    }
    return body.ok;
  };
  const timeoutOf = (o?: ClusterOptions) => {
    const t = o?.timeout ?? DEFAULT_TIMEOUT;
    if (!(t > 0)) throw new RangeError(`A timeout must be a positive number of ms, got ${t}`);
    return t;
  };
  return {
    async stats(options) {
      const timeout = timeoutOf(options);
      const live = d.nodes();
      const answers = await Promise.allSettled(
        live.map((n) => ask(n.id, "stats", null, timeout) as Promise<NodeStats>),
      );
      const nodes: NodeStats[] = [];
      const unreachable: string[] = [];
      answers.forEach((a, i) => {
        if (a.status === "fulfilled") nodes.push(a.value);
        else unreachable.push(live[i]!.id);
      });
      nodes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      return { at: d.clock.now(), nodes, unreachable };
    },
    async node(id, options) {
      try {
        return await ask(id, "stats", null, timeoutOf(options)) as NodeStats;
      } catch (err) {
        if (err instanceof ActorError && err.code !== "unavailable") {
          throw new UnavailableError(err.message, { cause: err });
        }
        throw err;
      }
    },
    async inspect(type, id, options) {
      const timeout = timeoutOf(options);
      const events = options?.events ?? DEFAULT_EVENTS;
      const where = await d.locate(type, id).catch(() => undefined);
      const candidates = [...new Set([...(where ? [where] : []), ...d.hostsOf(type)])];
      if (candidates.length === 0) {
        throw new UnknownActorTypeError(`No live node hosts actor type "${type}"`);
      }
      let last: unknown;
      for (const node of candidates) {
        try {
          return await ask(node, "inspect", { type, id, events }, timeout) as ActorReport;
        } catch (err) {
          last = err;
        }
      }
      throw last;
    },
  };
}
