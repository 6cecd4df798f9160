/**
 * NATS service discovery (the "micro" protocol of NATS's ADR-32, which `nats micro ls`,
 * `nats micro info` and `nats micro stats` and NATS's client libraries speak): each node
 * answers as service `troupe`, its node id as the instance id (also in the metadata as
 * `troupe.node`), with one endpoint per hosted actor type and that type's counts on the node.
 *
 * Subjects answered: `$SRV.<VERB>`, `$SRV.<VERB>.troupe` and `$SRV.<VERB>.troupe.<node>` for
 * `PING`, `INFO` and `STATS`; bodies are JSON. On a NATS server locked down with
 * `natsAuthConfig`, node users may subscribe `$SRV.>`.
 *
 * @module
 */

import type { MeshConnection, MeshMessage } from "../mesh/types.ts";
import type { Logger } from "../util/log.ts";
import { closeAll, type Responder } from "./control.ts";
import type { NodeObserver } from "./node.ts";

/** The service name every Troupe node answers as. */
export const SERVICE_NAME = "troupe";
/** The version the nodes report (semver, as the protocol requires). */
export const SERVICE_VERSION = "0.1.0";

/** One endpoint: an actor type hosted by the node. */
export interface MicroEndpoint {
  /** The actor type. */
  readonly name: string;
  /** The subject its messages reach this node on. */
  readonly subject: string;
  /** The queue group, for a stateless worker type. */
  readonly queueGroup?: string;
}

/** What a node's service responder needs. */
export interface MicroDeps {
  readonly conn: MeshConnection;
  readonly observer: NodeObserver;
  readonly log: Logger;
  /** The node id: the instance id. */
  readonly node: string;
  /** The mesh prefix (in the metadata as `troupe.prefix`). */
  readonly prefix: string;
  /** When the node started, ms since the epoch. */
  readonly since: number;
  /** Its endpoints. */
  readonly endpoints: readonly MicroEndpoint[];
  /** Whether a reply may be published to `subject`. */
  replyAllowed(subject: string): boolean;
}

const enc = new TextEncoder();

/** Starts answering `$SRV.PING|INFO|STATS` for this node. */
export function serveMicro(d: MicroDeps): Responder {
  const metadata = { "troupe.node": d.node, "troupe.prefix": d.prefix };
  const identity = { name: SERVICE_NAME, id: d.node, version: SERVICE_VERSION, metadata };
  const description = `Troupe node "${d.node}"`;
  const endpointInfo = (e: MicroEndpoint) => ({
    name: e.name,
    subject: e.subject,
    ...(e.queueGroup !== undefined ? { queue_group: e.queueGroup } : {}),
    metadata: { "troupe.actor.type": e.name },
  });
  const bodies: Record<string, () => unknown> = {
    PING: () => ({ type: "io.nats.micro.v1.ping_response", ...identity }),
    INFO: () => ({
      type: "io.nats.micro.v1.info_response",
      ...identity,
      description,
      endpoints: d.endpoints.map(endpointInfo),
    }),
    STATS: () => {
      const counts = new Map([...d.observer.gauges()].map((g) => [g.type, g]));
      return {
        type: "io.nats.micro.v1.stats_response",
        ...identity,
        started: new Date(d.since).toISOString(),
        endpoints: d.endpoints.map((e) => {
          const s = d.observer.type(e.name);
          const g = counts.get(e.name);
          const ns = Math.round(s.busyMs * 1e6);
          return {
            name: e.name,
            subject: e.subject,
            ...(e.queueGroup !== undefined ? { queue_group: e.queueGroup } : {}),
            num_requests: s.messages,
            num_errors: s.errors,
            last_error: s.lastError ?? "",
            processing_time: ns,
            average_processing_time: s.messages > 0 ? Math.round(ns / s.messages) : 0,
            data: { activations: g?.activations ?? 0, queued: g?.queued ?? 0 },
          };
        }),
      };
    },
  };
  const answer = (msg: MeshMessage) => {
    if (msg.reply === undefined || !d.replyAllowed(msg.reply)) return;
    const verb = msg.subject.split(".")[1] ?? "";
    const body = bodies[verb];
    if (!body) return;
    try {
      d.conn.publish(msg.reply, enc.encode(JSON.stringify(body())));
    } catch (err) {
      d.log.debug("Service discovery reply failed", { error: String(err) });
    }
  };
  const subs = ["$SRV.*", `$SRV.*.${SERVICE_NAME}`, `$SRV.*.${SERVICE_NAME}.${d.node}`].map((s) =>
    d.conn.subscribe(s, answer)
  );
  return { close: () => closeAll(subs) };
}
