/**
 * Serving: the receiving side of the mesh. A node subscribes its inbox for each type it hosts
 * (`<prefix>.n.<node>.<type>`) and each worker type's queue group: interest that grows with
 * nodes × types, never with actors. A request is decoded into a {@link Call} whose settlement
 * answers it, and handed to local delivery, where the one check runs.
 *
 * Protocol rules kept here: the envelope must name the type of the subject it arrived on (a
 * client allowed to publish on one type's subject cannot reach another type; nothing runs); a
 * node whose lease lapsed answers nothing; a closing node answers `retry` (nothing was
 * processed); reply and stream subjects must be inboxes; replies are bounded like requests.
 *
 * @module
 */

import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import type { Logger } from "../actor/envelope.ts";
import { checkPayloadSize, codecFor } from "../codec/mod.ts";
import { msgpack } from "../codec/msgpack.ts";
import type { Codec } from "../codec/types.ts";
import type { Membership } from "../directory/membership.ts";
import { ActorError, BadPayloadError, ConflictError } from "../errors.ts";
import {
  type MeshConnection,
  MeshError,
  type MeshMessage,
  type MeshSubscription,
} from "../mesh/types.ts";
import {
  decodeRequest,
  errorReply,
  okReply,
  redirectReply,
  retryReply,
  type WireRequest,
} from "../mesh/wire.ts";
import { StreamChannel } from "../actor/stream.ts";
import { type Deferred, deferred } from "../util/async.ts";
import type { Clock, TimerId } from "../util/clock.ts";
import { Call, type Settlement } from "./call.ts";
import type { MessageKind } from "../mesh/wire.ts";
import { RemoteSink, StreamReceiver } from "./remote_stream.ts";
import { isReplySubject, type Subjects } from "./subjects.ts";

/** What serving needs from its node. */
export interface ServeDeps {
  readonly node: string;
  readonly conn: MeshConnection;
  readonly subjects: Subjects;
  readonly membership: Membership;
  readonly log: Logger;
  /** The node's clock (deadlines, the late answer, the close bound). */
  readonly clock: Clock;
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

/**
 * How a call that arrived over the mesh answers its caller: one object per request holding the
 * reply subject and codec, instead of a closure per outcome.
 */
class Served implements Settlement {
  constructor(
    readonly server: Server,
    readonly reply: string | undefined,
    readonly codec: Codec,
    readonly kind: MessageKind,
    readonly sink: RemoteSink | undefined,
  ) {}

  accepted(): void {
    if (this.kind === "tell") {
      this.server.respond(this.reply, this.codec, okReply(this.codec, null));
    }
  }

  resolve(value: unknown): void {
    this.server.done();
    if (this.kind !== "ask") return;
    let data: Uint8Array;
    try {
      data = okReply(this.codec, value);
      checkPayloadSize(data.byteLength - 1, this.server.maxPayload, "Reply");
    } catch (err) {
      data = errorReply(this.codec, err, this.server.masked);
    }
    this.server.respond(this.reply, this.codec, data);
  }

  reject(err: unknown): void {
    this.server.done();
    if (this.sink) return this.sink.fail(err);
    const data = errorReply(this.codec, err, this.server.masked);
    if (err instanceof ActorError && err.cause instanceof ConflictError) {
      // A stale activation (another node took the actor over) must not win the race against
      // the live owner's reply: answer late.
      return this.server.later(() => this.server.respond(this.reply, this.codec, data));
    }
    this.server.respond(this.reply, this.codec, data);
  }

  retry(err: unknown): void {
    this.server.done();
    if (this.sink) return this.sink.fail(err);
    const why = err instanceof Error ? err.message : String(err);
    this.server.respond(this.reply, this.codec, retryReply(this.codec, why));
  }

  drop(): void {
    this.server.done();
    this.sink?.abandon();
  }

  redirect(node: string, revision: number): void {
    this.server.done();
    // Nothing ran here: the caller sends it to the owner (a stream's sink was never used).
    this.sink?.abandon();
    this.server.respond(this.reply, this.codec, redirectReply(this.codec, node, revision));
  }
}

/** Serves the requests that reach this node. */
export class Server {
  readonly #deps: ServeDeps;
  readonly #subs: MeshSubscription[] = [];
  readonly #late = new Map<TimerId, () => void>();
  #accepting = true;
  #drainedOut = false;
  #inflight = 0;
  #drained: Deferred<void> | undefined;

  constructor(deps: ServeDeps) {
    this.#deps = deps;
  }

  /** Subscribes this node's inbox for each hosted type, and the worker queues. */
  start(): Promise<void> {
    const d = this.#deps;
    for (const def of d.defs.values()) {
      const type = def.name;
      this.#subs.push(
        d.conn.subscribe(d.subjects.hosted(d.node, type), (msg) => this.#serve(msg, type)),
      );
      if (!def.stateless) continue;
      this.#subs.push(
        d.conn.subscribe(d.subjects.worker(type), (msg) => this.#serve(msg, type), {
          queue: d.subjects.workerGroup(type),
        }),
      );
    }
    return d.conn.flush();
  }

  /** One request, which arrived on a subject of `type`. */
  #serve(msg: MeshMessage, type: string): void {
    const d = this.#deps;
    // A stale owner stays silent (its callers move the request when it is declared dead). A
    // node that has drained holds no actor any more: its "retry" is safe even once its lease
    // lapses during shutdown.
    if (!this.#drainedOut && d.membership.isFenced()) return;
    const reply = msg.reply;
    let codec: Codec = msgpack;
    let req: WireRequest;
    let payload: unknown;
    let size: number;
    try {
      if (reply !== undefined && !isReplySubject(reply, d.replyPrefixes)) {
        // Answering would publish where the sender chose: never outside an inbox.
        d.log.warn("Dropped a request whose reply subject is not an inbox", {
          subject: msg.subject,
          reply: reply.slice(0, 200),
        });
        return;
      }
      const { req: r, offset } = decodeRequest(msg.data);
      req = r;
      const c = codecFor(req.contentType);
      if (!c) throw new BadPayloadError(`Unknown content type "${req.contentType}"`);
      codec = c;
      if (req.type !== type) {
        // Forged or misrouted: the subject's type is what the sender was allowed to reach.
        throw new BadPayloadError(
          `The message names actor type "${
            req.type.slice(0, 64)
          }" but arrived on the subject of "${type}"`,
        );
      }
      size = msg.data.byteLength - offset;
      payload = req.inputFrom === undefined ? codec.decode(msg.data.subarray(offset)) : undefined;
    } catch (err) {
      d.log.warn("Refused a malformed message", { subject: msg.subject, error: String(err) });
      return this.respond(
        reply,
        codec,
        errorReply(codec, err instanceof ActorError ? err : new BadPayloadError(String(err))),
      );
    }
    if (!this.#accepting) {
      return this.respond(reply, codec, retryReply(codec, `Node "${d.node}" is closing`));
    }
    let sink: RemoteSink | undefined;
    if (req.kind === "stream") {
      if (!req.streamTo || !isReplySubject(req.streamTo, d.replyPrefixes)) {
        return this.respond(
          reply,
          codec,
          errorReply(codec, new BadPayloadError("Stream request without a valid inbox")),
        );
      }
      sink = new RemoteSink(d.clock, d.conn, codec, d.replyPrefixes, req.streamTo);
      this.respond(reply, codec, okReply(codec, { credit: sink.creditSubject }));
    }
    // The caller streams its payload: the handler reads it from a bounded channel fed by the
    // caller's frames; the turn's end stops it (local delivery cancels the channel).
    let input: StreamChannel | undefined;
    if (req.inputFrom !== undefined) {
      if (!isReplySubject(req.inputFrom, d.replyPrefixes)) {
        const bad = new BadPayloadError("Input stream without a valid inbox");
        sink?.fail(bad);
        return this.respond(reply, codec, errorReply(codec, bad));
      }
      input = new StreamChannel(16);
      new StreamReceiver(
        d.clock,
        d.conn,
        codec,
        input,
        `input of ${req.type}.${req.handler}`,
        d.replyPrefixes,
      ).start(req.inputFrom);
    }
    this.#inflight++;
    const call = new Call({
      kind: req.kind,
      type: req.type,
      id: req.id,
      handler: req.handler,
      payload: input ?? payload,
      size,
      ...(input ? { input } : {}),
      deadline: d.clock.monotonic() + req.timeout,
      chain: req.chain,
      ...(req.token !== undefined ? { token: req.token } : {}),
      ...(req.idempotencyKey !== undefined ? { idempotencyKey: req.idempotencyKey } : {}),
      ...(req.trace !== undefined ? { trace: req.trace } : {}),
      ...(sink ? { sink } : {}),
      remote: true,
    }, new Served(this, reply, codec, req.kind, sink));
    if (input) call.finally(() => void input.cancel());
    d.deliver(call);
  }

  /** Publishes a reply (to an inbox checked when the request arrived). */
  respond(reply: string | undefined, codec: Codec, data: Uint8Array): void {
    if (reply === undefined) return;
    try {
      this.#deps.conn.publish(reply, data);
    } catch (err) {
      if (err instanceof MeshError && err.code === "max_payload") {
        // Within maxPayload, but not for the mesh: say so rather than leave the caller waiting
        // for its timeout.
        const tooBig = new BadPayloadError("Reply is too large for the mesh");
        return this.respond(reply, codec, errorReply(codec, tooBig));
      }
      this.#deps.log.debug("Reply failed", { error: String(err) });
    }
  }

  /** A served call was settled. */
  done(): void {
    if (--this.#inflight === 0 && this.#drained) this.#drained.resolve();
  }

  readonly masked = (e: unknown): void =>
    this.#deps.log.error("Internal error", { error: String(e) });

  /** The largest reply, bytes. */
  get maxPayload(): number {
    return this.#deps.maxPayload;
  }

  /** Runs `fn` after a short delay (a stale activation's answer), or at close. */
  later(fn: () => void): void {
    const timer = this.#deps.clock.setTimeout(() => {
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
    const clock = this.#deps.clock;
    const bounded = async (p: Promise<unknown>) => {
      let timer: TimerId | undefined;
      await Promise.race([
        p,
        new Promise<void>((r) => timer = clock.setTimeout(() => r(), boundMs)),
      ]);
      clock.clearTimeout(timer);
    };
    if (this.#inflight > 0) await bounded((this.#drained ??= deferred()).promise);
    for (const [timer, fn] of this.#late) {
      clock.clearTimeout(timer);
      fn();
    }
    this.#late.clear();
    const subs = this.#subs.splice(0);
    await bounded(Promise.all(subs.map((s) => s.drain())));
    for (const sub of subs) sub.unsubscribe();
  }
}
