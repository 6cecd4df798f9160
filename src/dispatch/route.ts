/**
 * Remote routing, the caller's side of a message that runs on another node. An active actor's
 * host subscribes to the actor's subject, so mesh interest is the routing table: a request to
 * that subject reaches the live activation. "No responders" triggers placement (rendezvous
 * hashing over the live hosts of the type) and the message goes to the chosen node's inbox,
 * which activates the actor. Stateless workers are placed by the caller (an id hint, else at
 * random) on one of their hosts.
 *
 * Failures, and what is safe to do about them:
 * - "no responders" and a `retry` answer mean nobody processed the message: send it again.
 * - A node declared dead (missed heartbeats, seen first-hand or through another node's
 *   clean-up) may still hold NATS subscriptions that swallow requests (a paused process looks
 *   connected until the server's pings give up). Requests waiting on it are moved after a short
 *   grace, new ones are placed on a live node instead of its actors' subjects, for as long as its
 *   subscriptions may live. A message that may have been handled is only sent again when that
 *   cannot apply it twice (a tell, or an ask with an idempotency key); others get `unavailable`.
 *
 * @module
 */

import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import type { Logger } from "../actor/envelope.ts";
import { pumpStream, type StreamChannel } from "../actor/stream.ts";
import { checkPayloadSize, codecFor } from "../codec/mod.ts";
import type { Codec } from "../codec/types.ts";
import type { Membership } from "../directory/membership.ts";
import type { Ownership } from "../directory/ownership.ts";
import { rendezvous } from "../directory/placement.ts";
import {
  type ActorError,
  BadPayloadError,
  TimeoutError,
  UnavailableError,
  UnknownActorTypeError,
} from "../errors.ts";
import { type MeshConnection, MeshError } from "../mesh/types.ts";
import { decodeReply, NotProcessed, requestHeaders } from "../mesh/wire.ts";
import { delay } from "../util/async.ts";
import type { Call } from "./call.ts";
import { openRemoteStream, RemoteSink, StreamReceiver } from "./remote_stream.ts";
import type { Subjects } from "./subjects.ts";

/** What remote routing needs from its node. */
export interface RemoteDeps {
  readonly node: string;
  readonly conn: MeshConnection;
  readonly subjects: Subjects;
  readonly membership: Membership;
  readonly ownership: Ownership;
  readonly log: Logger;
  readonly wireCodec: Codec;
  readonly maxPayload: number;
  /** Types hosted by this node. */
  readonly defs: ReadonlyMap<string, ActorDefinition<AnyActorTypes>>;
  /** Hands a call to this node's local delivery (placement chose this node). */
  deliverHere(call: Call): void;
  /** How long a dead node's subscriptions may still take requests, ms. @default {300000} */
  staleSubscriptionMs?: number;
  /** Inbox prefixes stream frames and credit may go to. */
  readonly replyPrefixes: readonly string[];
}

const MAX_ATTEMPTS = 100;
/** The shortest attempt of a request split in two (see `#send`). */
const MIN_ATTEMPT_MS = 500;
/** How long a request on an expired owner's actor may still get its own answer. */
const EXPIRY_GRACE_MS = 200;
/**
 * How long after a node was declared dead its subscriptions may still take requests: a paused
 * client looks connected to nats-server until its pings go unanswered (2 × 2 min by default).
 */
const STALE_SUBSCRIPTION_MS = 5 * 60_000;

/** A request waiting for its answer, to move when the node holding it is declared dead. */
interface Wait {
  readonly controller: AbortController;
  /** The node it was sent to; undefined: an actor subject (whoever holds it). */
  readonly node: string | undefined;
  readonly call: Call;
  timer?: ReturnType<typeof setTimeout>;
}

/** Routes calls of one node to other nodes. */
export class Remote {
  readonly #deps: RemoteDeps;
  readonly #waits = new Set<Wait>();
  /** Nodes declared dead (monotonic time), whose stale subscriptions may still take requests. */
  readonly #expired = new Map<string, number>();
  /** Actor types some node hosted since this node started. */
  readonly #hostedTypes = new Set<string>();
  readonly #offMembership: () => void;

  constructor(deps: RemoteDeps) {
    this.#deps = deps;
    for (const n of deps.membership.nodes()) for (const t of n.types) this.#hostedTypes.add(t);
    this.#offMembership = deps.membership.on((e) => {
      if (e.type === "node_joined") {
        this.#expired.delete(e.node.id);
        for (const t of e.node.types) this.#hostedTypes.add(t);
      } else if (e.type === "node_left") {
        if (e.reason === "expired") this.#nodeDied(e.node.id);
        else this.#nodeLeft(e.node.id);
      }
    });
  }

  // ---- placement policy ----

  /**
   * The node that should host `type/id` (this node when it is the only host), among the live
   * hosts of the type except those in `avoid` (nodes that just refused or did not answer).
   */
  placeActor(type: string, id: string, avoid?: ReadonlySet<string>): string | undefined {
    let hosts = this.#deps.membership.hostsOf(type);
    if (avoid && avoid.size > 0) {
      const others = hosts.filter((n) => !avoid.has(n));
      // All of them refused: they may be back (or be the only ones), so try them all again.
      if (others.length > 0) hosts = others;
    }
    if (hosts.length === 0) return undefined;
    if (hosts.length === 1) return hosts[0];
    return rendezvous(hosts, `${type}/${id}`);
  }

  /** Whether a stateless message should run on this node without asking the mesh. */
  workerIsLocalOnly(type: string): boolean {
    const hosts = this.#deps.membership.hostsOf(type);
    return hosts.length === 0 || (hosts.length === 1 && hosts[0] === this.#deps.node);
  }

  /** A live host of worker type `type` (by the id hint, else at random), avoiding `failed`. */
  #pickWorkerNode(type: string, id: string, failed: ReadonlySet<string>): string | undefined {
    const hosts = this.#deps.membership.hostsOf(type).filter((n) => !failed.has(n));
    if (hosts.length === 0) return undefined;
    if (id !== "") return rendezvous(hosts, `${type}/${id}`);
    return hosts[Math.floor(Math.random() * hosts.length)];
  }

  /** Whether `node` was declared dead recently (its subscriptions may be stale). */
  #isExpired(node: string): boolean {
    this.#pruneExpired();
    return this.#expired.has(node);
  }

  #pruneExpired(): void {
    const now = performance.now();
    const stale = this.#deps.staleSubscriptionMs ?? STALE_SUBSCRIPTION_MS;
    for (const [node, at] of this.#expired) {
      if (now - at > stale) this.#expired.delete(node);
    }
  }

  /**
   * `node` left gracefully: it drained what it took before leaving, and its subscriptions are
   * gone, so only requests sent to its inbox since need moving (they get no answer there).
   */
  #nodeLeft(node: string): void {
    const gone = new UnavailableError(`Node "${node}" left the cluster`);
    for (const w of this.#waits) if (w.node === node) w.controller.abort(gone);
  }

  /**
   * `node` was declared dead: requests sent to its inbox move now; requests waiting on an actor
   * subject move after a short grace (one that merely crossed the expiry gets its own answer
   * meanwhile) if they are safe to resend, or if the dead node still owns their actor. The
   * actor may already have been taken over by another node: a request sent before that sits
   * in the dead node's stale subscription all the same.
   */
  #nodeDied(node: string): void {
    this.#expired.set(node, performance.now());
    const gone = new UnavailableError(`Node "${node}" left the cluster`);
    for (const w of this.#waits) {
      if (w.node === node) w.controller.abort(gone);
      else if (w.node === undefined) {
        const moveLater = () => {
          if (this.#waits.has(w) && w.timer === undefined) {
            w.timer = setTimeout(() => w.controller.abort(gone), EXPIRY_GRACE_MS);
          }
        };
        if (resendable(w.call)) moveLater();
        else {
          this.#deps.ownership.owner(w.call.type, w.call.id).then((owner) => {
            if (owner === node) moveLater();
          }, () => {});
        }
      }
    }
  }

  // ---- sending ----

  /** Sends a call to whichever node hosts its actor (or to `node`'s inbox). */
  send(call: Call, node?: string): void {
    void this.#send(call, node);
  }

  async #send(call: Call, node: string | undefined): Promise<void> {
    const d = this.#deps;
    const { type, id } = call;
    let data: Uint8Array;
    try {
      data = d.wireCodec.encode(call.payload);
      checkPayloadSize(data.byteLength, d.maxPayload, `Message to ${call.target}.${call.handler}`);
    } catch (err) {
      return call.reject(err);
    }
    const def = d.defs.get(type);
    const worker = def?.stateless === true || (id === "" && !def);
    const home = worker ? d.subjects.worker(type) : d.subjects.actor(type, id);
    const failed = new Set<string>();
    let backoff = 10;
    const pause = async () => {
      await delay(Math.min(backoff, Math.max(0, call.deadline - performance.now())));
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
    // The caller's input stream goes out through one producer, whichever node ends up reading
    // it: that node names its inbox in its first credit frame.
    const input = call.input ? sendInput(d, call.input, call.deadline) : undefined;
    let target = node;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (call.settled) return; // the caller gave up (deadline, signal)
      const left = call.deadline - performance.now();
      if (left <= 0) {
        return call.reject(
          attempt > 0 && target === undefined && d.membership.hostsOf(type).length === 0
            ? new UnavailableError(`No live node hosts actor type "${type}" now`)
            : new TimeoutError(`Message to ${call.target}.${call.handler} timed out`),
        );
      }
      if (worker && target === undefined) {
        target = this.#pickWorkerNode(type, id, failed);
        if (target === undefined) {
          const unknown = failed.size === 0 ? noHost() : undefined;
          if (unknown) return call.reject(unknown);
          failed.clear();
          await pause();
          continue;
        }
        if (target === d.node) return d.deliverHere(call);
      } else if (target === undefined && (this.#pruneExpired(), this.#expired.size > 0)) {
        // After a node was declared dead: do not send to an actor it still "owns" (its stale
        // subscription would swallow the request); place it on a live node instead.
        const owner = await d.ownership.owner(type, id).catch(() => undefined);
        if (owner !== undefined && this.#isExpired(owner)) {
          const next = this.placeActor(type, id, failed);
          if (next === d.node) return d.deliverHere(call);
          if (next !== undefined) target = next;
        }
      }
      const subject = target !== undefined ? d.subjects.node(target) : home;
      const receiver = call.kind === "stream"
        ? new StreamReceiver(
          d.conn,
          d.wireCodec,
          call.sink as StreamChannel,
          `${call.target}.${call.handler}`,
          d.replyPrefixes,
        )
        : undefined;
      const headers = requestHeaders({
        kind: call.kind,
        type,
        id,
        handler: call.handler,
        timeout: left,
        contentType: d.wireCodec.contentType,
        chain: [...call.chain],
        ...(call.idempotencyKey !== undefined ? { idempotencyKey: call.idempotencyKey } : {}),
        ...(call.token !== undefined ? { token: call.token } : {}),
        ...(receiver ? { streamTo: receiver.inbox } : {}),
        ...(input ? { inputFrom: input.creditSubject } : {}),
        ...(call.trace !== undefined ? { trace: call.trace } : {}),
      });
      const sentTo = target;
      const wait: Wait = { controller: new AbortController(), node: sentTo, call };
      this.#waits.add(wait);
      try {
        if (receiver) {
          await openRemoteStream(d.conn, d.wireCodec, {
            subject,
            data,
            headers,
            timeout: left,
            receiver,
          });
          return call.accept(); // the items flow; the call is over when the stream is
        }
        // An ask that is safe to resend gets half its time per attempt: core NATS may lose a
        // request routed to a subscription that was going away (its interest lingers across
        // the cluster's routes for a moment), and the second attempt finds the new owner.
        const attemptTimeout = call.kind === "ask" && call.idempotencyKey !== undefined &&
            left > 2 * MIN_ATTEMPT_MS
          ? Math.max(MIN_ATTEMPT_MS, left / 2)
          : left;
        const reply = await d.conn.request(subject, data, {
          headers,
          timeout: attemptTimeout,
          signal: wait.controller.signal,
        });
        const value = decodeReply(reply, codecFor, d.wireCodec.contentType);
        call.accept();
        return call.resolve(value);
      } catch (err) {
        if (wait.controller.signal.aborted && err === wait.controller.signal.reason) {
          // The node died with the message: it may or may not have been handled.
          if (!resendable(call)) {
            return call.reject(
              new UnavailableError(
                `The node handling ${call.target}.${call.handler} failed (${
                  (err as Error).message
                })`,
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
          const owner = this.placeActor(type, id, failed);
          if (owner === undefined) {
            const unknown = noHost();
            if (unknown) return call.reject(unknown);
            await pause();
            continue;
          }
          if (owner === d.node) return d.deliverHere(call);
          target = owner;
          continue;
        }
        // A closing node answers before handling anything: also safe to send again.
        if (err instanceof NotProcessed) {
          if (target !== undefined) failed.add(target);
          target = undefined;
          await pause();
          continue;
        }
        if (err instanceof MeshError && err.code === "max_payload") {
          return call.reject(
            new BadPayloadError(
              `Message to ${call.target}.${call.handler} is too large for the mesh`,
              { cause: err },
            ),
          );
        }
        if (err instanceof MeshError && err.code === "timeout") {
          if (call.deadline - performance.now() > 0 && resendable(call)) {
            // No answer in its share of the time: lost or slow, and safe to send again.
            if (sentTo !== undefined) failed.add(sentTo);
            target = undefined;
            continue;
          }
          return call.reject(
            new TimeoutError(`Message to ${call.target}.${call.handler} timed out`),
          );
        }
        if (err instanceof MeshError) {
          return call.reject(
            new UnavailableError(`Mesh failed for ${call.target}: ${err.message}`, { cause: err }),
          );
        }
        return call.reject(err);
      } finally {
        this.#waits.delete(wait);
        clearTimeout(wait.timer);
      }
    }
    call.reject(
      new UnavailableError(`Could not route ${call.target} after ${MAX_ATTEMPTS} attempts`),
    );
  }

  /** Stops reacting to membership; requests in flight end by their deadlines. */
  close(): void {
    this.#offMembership();
  }
}

/**
 * Sends the caller's input stream to whichever node reads it, with that node's credit; it stops
 * when the reader cancels, the source ends, or the deadline passes.
 */
function sendInput(d: RemoteDeps, input: StreamChannel, deadline: number): RemoteSink {
  const sink = new RemoteSink(d.conn, d.wireCodec, d.replyPrefixes);
  pumpStream(input[Symbol.asyncIterator](), sink, deadline).catch((err) => sink.fail(err));
  return sink;
}

/** Safe to send again after a node died with it: nothing can be applied twice. */
function resendable(call: Call): boolean {
  return call.kind === "tell" || call.idempotencyKey !== undefined;
}
