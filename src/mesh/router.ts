/**
 * Routing across the mesh. An active actor's host subscribes to the actor's subject, so mesh
 * interest is the routing table; a request that finds no responder triggers placement
 * (rendezvous hashing over the live hosts of the type) and is forwarded to the chosen node's
 * inbox, which activates the actor and handles it. Stateless workers share a queue group per
 * type. Pub/sub topics map to subjects.
 *
 * @module
 */

import type { Activation } from "../actor/activation.ts";
import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import type { Envelope, Logger } from "../actor/envelope.ts";
import type { StreamChannel } from "../actor/stream.ts";
import { checkPayloadSize, codecFor } from "../codec/mod.ts";
import type { Codec } from "../codec/types.ts";
import type { Membership } from "../directory/membership.ts";
import type { Ownership } from "../directory/ownership.ts";
import { rendezvous } from "../directory/placement.ts";
import {
  ActorError,
  BadPayloadError,
  ClosedError,
  ConflictError,
  TimeoutError,
  UnavailableError,
  UnknownActorTypeError,
} from "../errors.ts";
import { encodeToken, isValidSubject } from "./subject.ts";
import { delay } from "../util/async.ts";
import {
  type MeshConnection,
  MeshError,
  type MeshMessage,
  type MeshSubscription,
} from "./types.ts";
import { decodeReply, errorReply, H, okReply, parseRequest, requestHeaders } from "./wire.ts";
import { openRemoteStream, RemoteSink } from "./remote_stream.ts";

/** What the router needs from its system. */
export interface RouterHost {
  readonly node: string;
  readonly prefix: string;
  readonly conn: MeshConnection;
  readonly membership: Membership;
  readonly log: Logger;
  readonly wireCodec: Codec;
  readonly maxPayload: number;
  readonly defs: ReadonlyMap<string, ActorDefinition<AnyActorTypes>>;
  readonly ownership: Ownership;
  deliverHere(type: string, id: string, m: Envelope): void;
}

const MAX_ATTEMPTS = 100;
/** How long a request on an expired owner's actor may still get its own answer. */
const EXPIRY_GRACE_MS = 200;

interface ActorWait {
  type: string;
  id: string;
  controller: AbortController;
  timer?: ReturnType<typeof setTimeout>;
}
/**
 * How long after a node was declared dead its subscriptions may still take requests: a paused
 * client looks connected to nats-server until its pings go unanswered (2 × 2 min by default).
 */
const STALE_SUBSCRIPTION_MS = 5 * 60_000;
/** How long a stale activation waits before it answers with its error. */
const STALE_REPLY_DELAY = 250;

function isNotProcessed(err: unknown): boolean {
  return err instanceof ActorError && err.code === "unavailable" &&
    (err.data as { retry?: unknown } | undefined)?.retry === true;
}

/** Routes messages of one node. */
export class Router {
  readonly #host: RouterHost;
  readonly #subs: MeshSubscription[] = [];
  readonly #actorSubs = new Map<string, MeshSubscription>();
  #accepting = true;
  #inflight = 0;
  readonly #timers = new Map<ReturnType<typeof setTimeout>, () => void>();

  #later(fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, STALE_REPLY_DELAY);
    this.#timers.set(timer, fn);
  }

  readonly #watching = new Map<string, Set<AbortController>>();
  /** Nodes declared dead (monotonic time), whose stale subscriptions may still take requests. */
  readonly #expired = new Map<string, number>();
  /** Requests waiting on an actor subject (to move when the owner is declared dead). */
  readonly #actorWaits = new Set<ActorWait>();
  /** Actor types some node hosted since this node started. */
  readonly #hostedTypes = new Set<string>();

  /** Whether `node` was declared dead recently (its subscriptions may be stale). */
  #isExpired(node: string): boolean {
    const at = this.#expired.get(node);
    if (at === undefined) return false;
    if (performance.now() - at > STALE_SUBSCRIPTION_MS) {
      this.#expired.delete(node);
      return false;
    }
    return true;
  }
  readonly #offMembership: () => void;

  constructor(host: RouterHost) {
    this.#host = host;
    for (const n of host.membership.nodes()) for (const t of n.types) this.#hostedTypes.add(t);
    this.#offMembership = host.membership.on((e) => {
      if (e.type === "node_joined") {
        this.#expired.delete(e.node.id);
        for (const t of e.node.types) this.#hostedTypes.add(t);
        return;
      }
      if (e.type !== "node_left") return;
      const gone = new UnavailableError(`Node "${e.node.id}" left the cluster`);
      for (const c of this.#watching.get(e.node.id) ?? []) c.abort(gone);
      if (e.reason !== "expired") return;
      // Its NATS subscriptions may outlive it (a paused process looks connected until the
      // server's pings give up): requests to its actors would hang there. Remember it, and
      // move requests already waiting on one of its actors.
      this.#expired.set(e.node.id, performance.now());
      for (const w of this.#actorWaits) {
        host.ownership.owner(w.type, w.id).then((owner) => {
          // A request that merely crossed the expiry gets its own answer (often "no
          // responders", which is safe to resend) within a moment; one sitting in a dead
          // node's stale subscription does not.
          if (owner === e.node.id && this.#actorWaits.has(w)) {
            w.timer = setTimeout(() => w.controller.abort(gone), EXPIRY_GRACE_MS);
          }
        }, () => {});
      }
    });
  }

  #actorSubject(type: string, id: string): string {
    return `${this.#host.prefix}.a.${encodeToken(type)}.${encodeToken(id)}`;
  }

  #nodeSubject(node: string): string {
    return `${this.#host.prefix}.n.${encodeToken(node)}`;
  }

  #workerSubject(type: string): string {
    return `${this.#host.prefix}.w.${encodeToken(type)}`;
  }

  /** Subscribes the node inbox and the worker queues. */
  start(): Promise<void> {
    const h = this.#host;
    this.#subs.push(h.conn.subscribe(this.#nodeSubject(h.node), (msg) => this.#serve(msg)));
    for (const def of h.defs.values()) {
      if (!def.stateless) continue;
      const subject = this.#workerSubject(def.name);
      this.#subs.push(
        h.conn.subscribe(subject, (msg) => this.#serve(msg), {
          queue: `w-${encodeToken(def.name)}`,
        }),
      );
    }
    return h.conn.flush();
  }

  /** An activation became active here: route its subject to this node until it stops. */
  activated(act: Activation): void {
    if (act.status !== "active") return;
    const subject = this.#actorSubject(act.def.name, act.id);
    const sub = this.#host.conn.subscribe(subject, (msg) => this.#serve(msg));
    this.#actorSubs.set(act.key, sub);
    act.stoppedPromise.then(() => {
      if (this.#actorSubs.get(act.key) === sub) this.#actorSubs.delete(act.key);
      sub.unsubscribe();
    });
  }

  /** The node that should host `type/id` (this node when it is the only host). */
  placeActor(type: string, id: string): string | undefined {
    const hosts = this.#host.membership.hostsOf(type);
    if (hosts.length === 0) return undefined;
    if (hosts.length === 1) return hosts[0];
    return rendezvous(hosts, `${type}/${id}`);
  }

  /** Whether a stateless message should run on this node without asking the router. */
  workerIsLocalOnly(type: string): boolean {
    const hosts = this.#host.membership.hostsOf(type);
    return hosts.length === 0 || (hosts.length === 1 && hosts[0] === this.#host.node);
  }

  /** Sends a message to whichever node hosts `type/id`. */
  send(type: string, id: string, m: Envelope): void {
    void this.#send(type, id, m, undefined);
  }

  /** Sends a message to a given node's inbox (it owns the actor). */
  forward(node: string, type: string, id: string, m: Envelope): void {
    void this.#send(type, id, m, node);
  }

  /** A live host of worker type `type` (by the id hint, else at random), avoiding `failed`. */
  #pickWorkerNode(type: string, id: string, failed: ReadonlySet<string>): string | undefined {
    const hosts = this.#host.membership.hostsOf(type).filter((n) => !failed.has(n));
    if (hosts.length === 0) return undefined;
    if (id !== "") return rendezvous(hosts, `${type}/${id}`);
    return hosts[Math.floor(Math.random() * hosts.length)];
  }

  async #send(type: string, id: string, m: Envelope, node: string | undefined): Promise<void> {
    const h = this.#host;
    let data: Uint8Array;
    try {
      data = h.wireCodec.encode(m.payload);
      checkPayloadSize(data.byteLength, h.maxPayload, `Message to ${type}.${m.handler}`);
    } catch (err) {
      return m.reject(err);
    }
    const def = h.defs.get(type);
    const worker = def?.stateless === true || (id === "" && !def);
    const home = worker ? this.#workerSubject(type) : this.#actorSubject(type, id);
    // Safe to send again after a node died with it: nothing can be applied twice.
    const resendable = m.kind === "tell" || m.idempotencyKey !== undefined;
    const failed = new Set<string>();
    let backoff = 10;
    const pause = async () => {
      await delay(Math.min(backoff, Math.max(0, m.deadline - performance.now())));
      backoff = Math.min(backoff * 2, 500);
    };
    const noHost = (): ActorError | undefined => {
      // A type no node hosted since this node started (its first view of the membership is
      // the whole bucket) is unknown; else its hosts are away for now and may come back.
      if (!this.#hostedTypes.has(type)) {
        return new UnknownActorTypeError(`No live node hosts actor type "${type}"`);
      }
      return undefined;
    };
    let target = node;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const left = m.deadline - performance.now();
      if (left <= 0) {
        return m.reject(
          attempt > 0 && target === undefined && h.membership.hostsOf(type).length === 0
            ? new UnavailableError(`No live node hosts actor type "${type}" now`)
            : new TimeoutError(`Message to ${type}/${id} timed out`),
        );
      }
      if (worker && target === undefined) {
        target = this.#pickWorkerNode(type, id, failed);
        if (target === undefined) {
          const unknown = failed.size === 0 ? noHost() : undefined;
          if (unknown) return m.reject(unknown);
          failed.clear();
          await pause();
          continue;
        }
        if (target === h.node) return h.deliverHere(type, id, m);
      } else if (target === undefined && this.#expired.size > 0) {
        // After a node was declared dead: do not send to an actor it still "owns" (its stale
        // subscription would swallow the request); place it on a live node instead.
        const owner = await h.ownership.owner(type, id).catch(() => undefined);
        if (owner !== undefined && this.#isExpired(owner)) {
          const next = this.placeActor(type, id);
          if (next === h.node) return h.deliverHere(type, id, m);
          if (next !== undefined) target = next;
        }
      }
      const subject = target !== undefined ? this.#nodeSubject(target) : home;
      const streamTo = m.kind === "stream" ? h.conn.inbox() : undefined;
      const headers = requestHeaders({
        kind: m.kind,
        type,
        id,
        handler: m.handler,
        timeout: left,
        contentType: h.wireCodec.contentType,
        chain: [...m.chain],
        ...(m.idempotencyKey !== undefined ? { idempotencyKey: m.idempotencyKey } : {}),
        ...(m.token !== undefined ? { token: m.token } : {}),
        ...(streamTo !== undefined ? { streamTo } : {}),
      });
      const sentTo = target;
      const watch = sentTo !== undefined ? this.#watchNode(sentTo) : this.#watchActor(type, id);
      try {
        if (m.kind === "stream") {
          await openRemoteStream(h.conn, h.wireCodec, {
            subject,
            data,
            headers,
            timeout: left,
            inbox: streamTo!,
            handler: m.handler,
            sink: m.sink as StreamChannel,
          });
          return;
        }
        const reply = await h.conn.request(subject, data, {
          headers,
          timeout: left,
          signal: watch.signal,
        });
        const value = decodeReply(reply, codecFor, h.wireCodec.contentType);
        if (m.kind === "tell") (m as { accepted?: () => void }).accepted?.();
        else m.resolve(value);
        return;
      } catch (err) {
        if (watch.signal.aborted && err === watch.signal.reason) {
          // The node died with the message: it may or may not have been handled.
          if (!resendable) {
            return m.reject(
              new UnavailableError(
                `The node handling ${type}/${id}.${m.handler} failed (${(err as Error).message})`,
                { cause: err },
              ),
            );
          }
          if (sentTo !== undefined) failed.add(sentTo);
          target = undefined;
          continue;
        }
        // "No responders" means nobody received it: always safe to send again.
        if (err instanceof MeshError && err.code === "no_responders") {
          if (target !== undefined) {
            // That node is gone or leaving but may still look alive: wait, then re-resolve.
            failed.add(target);
            target = undefined;
            await pause();
            continue;
          }
          const owner = this.placeActor(type, id);
          if (owner === undefined) {
            const unknown = noHost();
            if (unknown) return m.reject(unknown);
            await pause();
            continue;
          }
          if (owner === h.node) return h.deliverHere(type, id, m);
          target = owner;
          continue;
        }
        // A closing node answers before handling anything: also safe to send again.
        if (isNotProcessed(err)) {
          if (target !== undefined) failed.add(target);
          target = undefined;
          await pause();
          continue;
        }
        if (err instanceof MeshError && err.code === "timeout") {
          return m.reject(new TimeoutError(`Message to ${type}/${id}.${m.handler} timed out`));
        }
        if (err instanceof MeshError) {
          return m.reject(
            new UnavailableError(`Mesh failed for ${type}/${id}: ${err.message}`, { cause: err }),
          );
        }
        return m.reject(err);
      } finally {
        watch.done();
      }
    }
    m.reject(new UnavailableError(`Could not route ${type}/${id} after ${MAX_ATTEMPTS} attempts`));
  }

  /** An abort signal that fires when the node owning `type/id` is declared dead. */
  #watchActor(type: string, id: string): { signal: AbortSignal; done(): void } {
    const w: ActorWait = { type, id, controller: new AbortController() };
    this.#actorWaits.add(w);
    return {
      signal: w.controller.signal,
      done: () => {
        this.#actorWaits.delete(w);
        clearTimeout(w.timer);
      },
    };
  }

  /** An abort signal that fires when `node` leaves the cluster (dies or closes). */
  #watchNode(node: string): { signal: AbortSignal; done(): void } {
    const controller = new AbortController();
    let set = this.#watching.get(node);
    if (!set) this.#watching.set(node, set = new Set());
    set.add(controller);
    return {
      signal: controller.signal,
      done: () => {
        set.delete(controller);
        if (set.size === 0) this.#watching.delete(node);
      },
    };
  }

  /** Serves an inbound request. */
  #serve(msg: MeshMessage): void {
    const h = this.#host;
    if (h.membership.isFenced()) return; // a stale owner stays silent
    const respond = (r: { data: Uint8Array; headers?: Record<string, string> }) => {
      if (!msg.reply) return;
      try {
        h.conn.publish(msg.reply, r.data, r.headers ? { headers: r.headers } : undefined);
      } catch (err) {
        h.log.debug("Reply failed", { error: String(err) });
      }
    };
    let codec: Codec;
    let req;
    let payload: unknown;
    try {
      req = parseRequest(msg.headers);
      const c = codecFor(req.contentType);
      if (!c) throw new BadPayloadError(`Unknown content type "${req.contentType}"`);
      codec = c;
      checkPayloadSize(msg.data.byteLength, h.maxPayload, "Payload");
      payload = codec.decode(msg.data);
    } catch (err) {
      h.log.warn("Dropped a malformed message", { subject: msg.subject, error: String(err) });
      return respond(
        errorReply(h.wireCodec, err instanceof ActorError ? err : new BadPayloadError(String(err))),
      );
    }
    if (!this.#accepting) {
      return respond(
        errorReply(
          codec,
          new UnavailableError(`Node "${h.node}" is closing`, { data: { retry: true } }),
        ),
      );
    }
    this.#inflight++;
    let finished = false;
    const finish = () => {
      if (!finished) {
        finished = true;
        this.#inflight--;
      }
    };
    const onMasked = (e: unknown) => h.log.error("Internal error", { error: String(e) });
    const m: Envelope & { accepted?: () => void } = {
      kind: req.kind,
      handler: req.handler,
      payload,
      deadline: performance.now() + req.timeout,
      chain: req.chain,
      ...(req.token !== undefined ? { token: req.token } : {}),
      ...(req.idempotencyKey !== undefined ? { idempotencyKey: req.idempotencyKey } : {}),
      resolve: (value) => {
        finish();
        if (req.kind !== "ask") return;
        try {
          const r = okReply(codec, value);
          checkPayloadSize(r.data.byteLength, h.maxPayload, "Reply");
          respond(r);
        } catch (err) {
          respond(errorReply(codec, err, onMasked));
        }
      },
      reject: (err) => {
        finish();
        if (req.kind === "stream" && sink) return sink.fail(err);
        const reply = errorReply(codec, err, onMasked);
        if (err instanceof ActorError && err.cause instanceof ConflictError) {
          // A stale activation (another node took the actor over) must not win the race
          // against the live owner's reply to the same request: answer late.
          return this.#later(() => respond(reply));
        }
        respond(reply);
      },
    };
    if (req.kind === "tell") m.accepted = () => respond(okReply(codec, null));
    let sink: RemoteSink | undefined;
    if (req.kind === "stream") {
      if (!req.streamTo || !isValidSubject(req.streamTo)) {
        finish();
        return respond(
          errorReply(codec, new BadPayloadError("Stream request without a valid inbox")),
        );
      }
      sink = new RemoteSink(h.conn, codec, req.streamTo);
      (m as { sink?: unknown }).sink = sink;
      respond(okReply(codec, { credit: sink.creditSubject }));
    }
    h.deliverHere(req.type, req.id, m);
  }

  /** Publishes to a topic. */
  publish(topic: string, payload: unknown): Promise<void> {
    const h = this.#host;
    if (!isValidSubject(topic)) {
      return Promise.reject(new TypeError(`Topic "${topic}" is not valid (dot-separated tokens)`));
    }
    try {
      const data = h.wireCodec.encode(payload);
      checkPayloadSize(data.byteLength, h.maxPayload, `Publish to "${topic}"`);
      h.conn.publish(`${h.prefix}.t.${topic}`, data, {
        headers: { [H.contentType]: h.wireCodec.contentType },
      });
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err instanceof MeshError ? new ClosedError(err.message) : err);
    }
  }

  /** Subscribes a handler to a topic pattern. */
  subscribe(
    topic: string,
    handler: (payload: unknown, topic: string) => void | Promise<void>,
    group: string | undefined,
  ): { topic: string; unsubscribe(): void; [Symbol.dispose](): void } {
    const h = this.#host;
    if (!isValidSubject(topic, true)) {
      throw new TypeError(`Topic pattern "${topic}" is not valid`);
    }
    const strip = h.prefix.length + 3;
    const sub = h.conn.subscribe(`${h.prefix}.t.${topic}`, (msg) => {
      let payload: unknown;
      try {
        const codec = codecFor(msg.headers[H.contentType] ?? h.wireCodec.contentType);
        if (!codec) throw new BadPayloadError("Unknown content type");
        checkPayloadSize(msg.data.byteLength, h.maxPayload, "Published message");
        payload = codec.decode(msg.data);
      } catch (err) {
        return h.log.warn("Dropped a malformed published message", {
          subject: msg.subject,
          error: String(err),
        });
      }
      const name = msg.subject.slice(strip);
      try {
        const r = handler(payload, name);
        if (r && typeof (r as Promise<void>).then === "function") {
          (r as Promise<void>).catch((err) =>
            h.log.error(`Subscriber of "${topic}" failed`, { error: String(err) })
          );
        }
      } catch (err) {
        h.log.error(`Subscriber of "${topic}" failed`, { error: String(err) });
      }
    }, group !== undefined ? { queue: group } : {});
    return {
      topic,
      unsubscribe: () => sub.unsubscribe(),
      [Symbol.dispose]: () => sub.unsubscribe(),
    };
  }

  /** Stops taking remote requests (they get `unavailable`), waiting for accepted ones. */
  /**
   * Stops taking remote requests: from now on they are answered `unavailable` with
   * `retry: true` (nothing was handled), so callers send them again elsewhere.
   */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /** Unsubscribes everything, waiting (bounded) for accepted requests to be answered. */
  async close(): Promise<void> {
    this.#accepting = false;
    this.#offMembership();
    const until = performance.now() + 10_000;
    while (this.#inflight > 0 && performance.now() < until) {
      await new Promise((r) => setTimeout(r, 2));
    }
    for (const [timer, fn] of this.#timers) {
      clearTimeout(timer);
      fn();
    }
    this.#timers.clear();
    for (const sub of this.#actorSubs.values()) sub.unsubscribe();
    this.#actorSubs.clear();
    for (const sub of this.#subs) sub.unsubscribe();
    this.#subs.length = 0;
  }
}
