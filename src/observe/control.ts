/**
 * The node's side of `system.cluster` (cluster.ts): it answers its control subjects
 * (`<prefix>.c.obs.<node>.stats|inspect`) about itself, from its own counts, activations and
 * journal.
 *
 * @module
 */

import { msgpack } from "../codec/mod.ts";
import type { NodeInfo } from "../directory/types.ts";
import { BadPayloadError, toWireError, UnknownActorTypeError, type WireError } from "../errors.ts";
import type { Journal } from "../journal/types.ts";
import type { MeshConnection, MeshSubscription } from "../mesh/types.ts";
import type { Logger } from "../util/log.ts";
import {
  type ActorEvent,
  type ActorReport,
  controlSubject,
  DEFAULT_EVENTS,
  type LeaseReport,
  MAX_EVENTS,
  type NodeStats,
  type TypeReport,
} from "./cluster.ts";
import type { NodeObserver } from "./node.ts";

/** Most ids and types accepted in a control request, bytes. */
const MAX_NAME = 1_024;

/** What a node's control responder reads. */
export interface ControlDeps {
  readonly prefix: string;
  readonly conn: MeshConnection;
  readonly observer: NodeObserver;
  readonly journal: Journal;
  readonly log: Logger;
  /** This node (id, types, since). */
  info(): NodeInfo;
  /** Whether hosted type `type` is a stateless worker type. */
  stateless(type: string): boolean;
  /** The node's status (`system.status()`). */
  status(): string;
  /** Leases this node holds now. */
  leases(): LeaseReport[];
  /** The actor if it is active here now. */
  active(type: string, id: string): { seq: number; queued: number } | undefined;
  /** Its events from `from` on, upcast (undefined: the type is not hosted here). */
  history(type: string, id: string, from: number): AsyncIterable<ActorEvent> | undefined;
  /** Whether a reply may be published to `subject` (an inbox). */
  replyAllowed(subject: string): boolean;
}

/** A running responder: stop it before the connection closes. */
export interface Responder {
  /** Stops answering. */
  close(): Promise<void>;
}

/** This node's report now. */
export function nodeStats(d: ControlDeps): NodeStats {
  const info = d.info();
  const rates = d.observer.rates();
  const counts = new Map([...d.observer.gauges()].map((g) => [g.type, g]));
  const actors = info.types.map((type): TypeReport => {
    const s = d.observer.type(type);
    const g = counts.get(type);
    return {
      type,
      stateless: d.stateless(type),
      activations: g?.activations ?? 0,
      queued: g?.queued ?? 0,
      messages: s.messages,
      rate: Math.round((rates.get(type) ?? 0) * 10) / 10,
      errors: s.errors,
      busyMs: Math.round(s.busyMs),
      ...(s.lastError !== undefined ? { lastError: s.lastError } : {}),
    };
  });
  return {
    id: info.id,
    types: info.types,
    since: info.since,
    status: d.status(),
    at: d.observer.clock.now(),
    actors,
    errors: d.observer.errors(),
    leases: d.leases(),
    projections: [...d.observer.projections()].map((p) => ({
      name: p.name,
      running: p.running,
      lag: Math.round(p.lag),
      ...(p.position !== undefined ? { position: p.position } : {}),
    })),
  };
}

/**
 * Answers this node's control subjects (`<prefix>.c.obs.<node>.stats|inspect`).
 */
export function serveControl(d: ControlDeps): Responder {
  const codec = msgpack;
  const node = d.info().id;
  const sub = d.conn.subscribe(controlSubject(d.prefix, node, "*"), (msg) => {
    const reply = msg.reply;
    if (reply === undefined || !d.replyAllowed(reply)) return;
    const op = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    const answer = (body: { ok: unknown } | { error: WireError }) => {
      try {
        d.conn.publish(reply, codec.encode(body));
      } catch (err) {
        d.log.debug("Control reply failed", { error: String(err) });
      }
    };
    (async () => {
      if (op === "stats") return nodeStats(d);
      if (op === "inspect") return await inspectHere(d, node, codec.decode(msg.data));
      throw new BadPayloadError(`Unknown control operation "${op.slice(0, 50)}"`);
    })().then(
      (ok) => answer({ ok }),
      (err) =>
        answer({
          error: toWireError(
            err,
            (e) => d.log.warn("Control request failed", { op, error: String(e) }),
          ),
        }),
    );
  });
  return {
    close: async () => {
      await sub.drain().catch(() => sub.unsubscribe());
    },
  };
}

async function inspectHere(d: ControlDeps, node: string, params: unknown): Promise<ActorReport> {
  const p = params as { type?: unknown; id?: unknown; events?: unknown } | null;
  const type = p?.type;
  const id = p?.id;
  if (
    typeof type !== "string" || typeof id !== "string" || type.length > MAX_NAME ||
    id.length > MAX_NAME
  ) {
    throw new BadPayloadError("An inspect request needs a type and an id (strings)");
  }
  const n = typeof p?.events === "number" && p.events >= 0
    ? Math.min(Math.floor(p.events), MAX_EVENTS)
    : DEFAULT_EVENTS;
  const active = d.active(type, id);
  const seq = active?.seq ?? await lastSeq(d.journal, `${type}/${id}`);
  const from = Math.max(1, seq - n + 1);
  const events: ActorEvent[] = [];
  const history = d.history(type, id, from);
  if (!history) throw new UnknownActorTypeError(`Node "${node}" does not host "${type}"`);
  if (n > 0 && seq > 0) {
    for await (const e of history) {
      events.push({ seq: e.seq, type: e.type, payload: e.payload, at: e.at });
      if (events.length >= n) break;
    }
  }
  return {
    type,
    id,
    node: active ? node : undefined,
    seq: active ? seq : (events[events.length - 1]?.seq ?? seq),
    queued: active?.queued ?? 0,
    events,
    answeredBy: node,
  };
}

/**
 * The seq of an actor's last event, found with a few one-event reads (doubling, then
 * halving), without reading its whole log.
 */
export async function lastSeq(journal: Journal, actor: string): Promise<number> {
  const has = async (seq: number) => (await journal.read(actor, seq, 1)).length > 0;
  if (!(await has(1))) return 0;
  let lo = 1; // an event exists at lo
  let hi = 2;
  while (await has(hi)) {
    lo = hi;
    hi *= 2;
  }
  // lo exists, hi does not: the last one is in [lo, hi).
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await has(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** A subscription list closed together. */
export async function closeAll(subs: readonly MeshSubscription[]): Promise<void> {
  await Promise.all(subs.map((s) => s.drain().catch(() => s.unsubscribe())));
}
