/**
 * Serving: the receiving side of the mesh. A request arrives on this node's inbox, a worker
 * queue or an active actor's subject; it is decoded into a {@link Call} whose settlement
 * answers the request, and handed to local delivery, where the one check runs.
 *
 * Protocol rules kept here: a node whose lease lapsed answers nothing (the live owner may
 * answer the same request); a closing node answers `retry` (nothing was processed); reply and
 * stream subjects must be inboxes; replies are bounded like requests.
 *
 * @module
 */

import type { Activation } from "../actor/activation.ts";
import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import type { Logger } from "../actor/envelope.ts";
import { checkPayloadSize, codecFor } from "../codec/mod.ts";
import type { Codec } from "../codec/types.ts";
import type { Membership } from "../directory/membership.ts";
import { ActorError, BadPayloadError, ConflictError } from "../errors.ts";
import {
  type MeshConnection,
  MeshError,
  type MeshMessage,
  type MeshSubscription,
} from "../mesh/types.ts";
import { errorReply, okReply, parseRequest, retryReply, type WireRequest } from "../mesh/wire.ts";
import { type Deferred, deferred } from "../util/async.ts";
import { Call } from "./call.ts";
import { RemoteSink, StreamReceiver } from "./remote_stream.ts";
import { StreamChannel } from "../actor/stream.ts";
import { isReplySubject, type Subjects } from "./subjects.ts";

/** What serving needs from its node. */
export interface ServeDeps {
  readonly node: string;
  readonly conn: MeshConnection;
  readonly subjects: Subjects;
  readonly membership: Membership;
  readonly log: Logger;
  readonly wireCodec: Codec;
  readonly maxPayload: number;
  /** Types hosted by this node. */
  readonly defs: ReadonlyMap<string, ActorDefinition<AnyActorTypes>>;
  /** Local delivery (the one check, then the mailbox). */
  deliver(call: Call): void;
  /** Inbox prefixes this node publishes replies and stream frames to. */
  readonly replyPrefixes: readonly string[];
}

/** How long a stale activation waits before it answers with its error. */
const STALE_REPLY_DELAY = 250;

type Reply = { data: Uint8Array; headers?: Record<string, string> };

/** Serves the requests that reach this node. */
export class Server {
  readonly #deps: ServeDeps;
  readonly #subs: MeshSubscription[] = [];
  readonly #actorSubs = new Map<string, { act: Activation<Call>; sub: MeshSubscription }>();
  readonly #late = new Map<ReturnType<typeof setTimeout>, () => void>();
  #accepting = true;
  #drainedOut = false;
  #inflight = 0;
  #drained: Deferred<void> | undefined;

  constructor(deps: ServeDeps) {
    this.#deps = deps;
    const probe = deps.subjects.actor("t", "i");
    this.#actorPrefix = probe.slice(0, probe.length - "t.i".length);
  }

  /** Subscribes the node inbox and the worker queues. */
  start(): Promise<void> {
    const d = this.#deps;
    this.#subs.push(d.conn.subscribe(d.subjects.node(d.node), (msg) => this.#serve(msg)));
    for (const def of d.defs.values()) {
      if (!def.stateless) continue;
      this.#subs.push(
        d.conn.subscribe(d.subjects.worker(def.name), (msg) => this.#serve(msg), {
          queue: d.subjects.workerGroup(def.name),
        }),
      );
    }
    return d.conn.flush();
  }

  readonly #serveBound = (msg: MeshMessage) => this.#serve(msg);
  /** The common start of actor subjects (requests on them may reach several subscribers). */
  readonly #actorPrefix: string;

  /** An activation became active here: its subject routes to this node until it stops. */
  activated(act: Activation<Call>): void {
    if (act.status !== "active") return;
    const sub = this.#deps.conn.subscribe(
      this.#deps.subjects.actor(act.def.name, act.id),
      this.#serveBound,
    );
    this.#actorSubs.set(act.key, { act, sub });
  }

  /**
   * An activation stopped: its subject no longer routes here. After a planned stop the
   * subscription is drained: a request the server routed here before it saw the unsubscribe is
   * still served (by a new activation, or answered "retry" while closing). After a fenced one
   * it is dropped: another node owns the actor now and got the same requests; serving ours
   * too (forwarding them to it) would apply them twice.
   */
  deactivated(act: Activation<Call>, fenced: boolean): void {
    const entry = this.#actorSubs.get(act.key);
    if (entry?.act !== act) return;
    this.#actorSubs.delete(act.key);
    const sub = entry.sub;
    if (fenced) sub.unsubscribe();
    else sub.drain().catch(() => sub.unsubscribe());
  }

  #serve(msg: MeshMessage): void {
    const d = this.#deps;
    // A stale owner stays silent (the live owner may answer the same request). A node that has
    // drained holds no actor any more: what reaches it now was sent to it alone (its inbox, a
    // worker queue), so its "retry" is safe even once its lease lapses during shutdown.
    if (!this.#drainedOut && d.membership.isFenced()) return;
    const respond = (r: Reply) => {
      if (!msg.reply) return;
      try {
        d.conn.publish(msg.reply, r.data, r.headers ? { headers: r.headers } : undefined);
      } catch (err) {
        if (err instanceof MeshError && err.code === "max_payload") {
          // Within maxPayload, but not with its headers: say so rather than leave the caller
          // waiting for its timeout.
          const tooBig = new BadPayloadError("Reply is too large for the mesh");
          return respond(errorReply(d.wireCodec, tooBig));
        }
        d.log.debug("Reply failed", { error: String(err) });
      }
    };
    let req: WireRequest;
    let codec: Codec;
    let payload: unknown;
    try {
      if (msg.reply !== undefined && !isReplySubject(msg.reply, d.replyPrefixes)) {
        // Answering would publish where the sender chose: never outside an inbox.
        d.log.warn("Dropped a request whose reply subject is not an inbox", {
          subject: msg.subject,
          reply: msg.reply.slice(0, 200),
        });
        return;
      }
      req = parseRequest(msg.headers);
      const c = codecFor(req.contentType);
      if (!c) throw new BadPayloadError(`Unknown content type "${req.contentType}"`);
      codec = c;
      payload = codec.decode(msg.data);
    } catch (err) {
      d.log.warn("Dropped a malformed message", { subject: msg.subject, error: String(err) });
      return respond(
        errorReply(d.wireCodec, err instanceof ActorError ? err : new BadPayloadError(String(err))),
      );
    }
    if (!this.#accepting) return respond(retryReply(codec, `Node "${d.node}" is closing`));
    let sink: RemoteSink | undefined;
    if (req.kind === "stream") {
      if (!req.streamTo || !isReplySubject(req.streamTo, d.replyPrefixes)) {
        return respond(
          errorReply(codec, new BadPayloadError("Stream request without a valid inbox")),
        );
      }
      sink = new RemoteSink(d.conn, codec, d.replyPrefixes, req.streamTo);
      respond(okReply(codec, { credit: sink.creditSubject }));
    }
    // The caller streams its payload: the handler reads it from a bounded channel fed by the
    // caller's frames; the turn's end stops it (local delivery cancels the channel).
    let input: StreamChannel | undefined;
    if (req.inputFrom !== undefined) {
      if (!isReplySubject(req.inputFrom, d.replyPrefixes)) {
        sink?.fail(new BadPayloadError("Input stream without a valid inbox"));
        return respond(
          errorReply(codec, new BadPayloadError("Input stream without a valid inbox")),
        );
      }
      input = new StreamChannel(16);
      new StreamReceiver(
        d.conn,
        codec,
        input,
        `input of ${req.type}.${req.handler}`,
        d.replyPrefixes,
      )
        .start(req.inputFrom);
    }
    this.#inflight++;
    const done = () => {
      if (--this.#inflight === 0 && this.#drained) this.#drained.resolve();
    };
    const onMasked = (e: unknown) => d.log.error("Internal error", { error: String(e) });
    const kind = req.kind;
    const call = new Call({
      kind,
      type: req.type,
      id: req.id,
      handler: req.handler,
      payload: input ?? payload,
      size: msg.data.byteLength,
      ...(input ? { input } : {}),
      ...(msg.subject.startsWith(this.#actorPrefix) ? { shared: true } : {}),
      deadline: performance.now() + req.timeout,
      chain: req.chain,
      ...(req.token !== undefined ? { token: req.token } : {}),
      ...(req.idempotencyKey !== undefined ? { idempotencyKey: req.idempotencyKey } : {}),
      ...(sink ? { sink } : {}),
      ...(req.trace !== undefined ? { trace: req.trace } : {}),
    }, {
      accepted: () => {
        if (kind === "tell") respond(okReply(codec, null));
      },
      resolve: (value) => {
        done();
        if (kind !== "ask") return;
        try {
          const r = okReply(codec, value);
          checkPayloadSize(r.data.byteLength, d.maxPayload, "Reply");
          respond(r);
        } catch (err) {
          respond(errorReply(codec, err, onMasked));
        }
      },
      reject: (err) => {
        done();
        if (sink) return sink.fail(err);
        const reply = errorReply(codec, err, onMasked);
        if (err instanceof ActorError && err.cause instanceof ConflictError) {
          // A stale activation (another node took the actor over) must not win the race
          // against the live owner's reply to the same request: answer late.
          return this.#later(() => respond(reply));
        }
        respond(reply);
      },
      retry: (err) => {
        done();
        if (sink) return sink.fail(err);
        respond(retryReply(codec, err instanceof Error ? err.message : String(err)));
      },
      drop: () => {
        done();
        sink?.abandon();
      },
    });
    if (input) call.finally(() => void input.cancel());
    d.deliver(call);
  }

  #later(fn: () => void): void {
    const timer = setTimeout(() => {
      this.#late.delete(timer);
      fn();
    }, STALE_REPLY_DELAY);
    this.#late.set(timer, fn);
  }

  /**
   * Stops taking requests: from now on they are answered `retry` (nothing was handled), so
   * callers send them again elsewhere.
   */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /** The node has drained (no actor is active here): answer `retry` whatever its lease. */
  drainedOut(): void {
    this.#drainedOut = true;
  }

  /**
   * Waits (at most `boundMs`) for accepted requests to be answered, then drains every
   * subscription: requests already on their way when the server drops the interest are still
   * answered (`retry`), never left to time out.
   */
  async close(boundMs: number): Promise<void> {
    this.#accepting = false;
    const bounded = async (p: Promise<unknown>) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([p, new Promise((r) => timer = setTimeout(r, boundMs))]);
      clearTimeout(timer);
    };
    if (this.#inflight > 0) await bounded((this.#drained ??= deferred()).promise);
    for (const [timer, fn] of this.#late) {
      clearTimeout(timer);
      fn();
    }
    this.#late.clear();
    const subs = [...[...this.#actorSubs.values()].map((e) => e.sub), ...this.#subs];
    this.#actorSubs.clear();
    this.#subs.length = 0;
    await bounded(Promise.all(subs.map((s) => s.drain())));
    for (const sub of subs) sub.unsubscribe();
  }
}
