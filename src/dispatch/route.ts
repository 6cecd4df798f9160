/**
 * Remote routing, the caller's side of a message that runs on another node: a loop of
 * decide → attempt → classify. The {@link Router} decides where the call goes; one attempt
 * sends it to that node's inbox for the type (`<prefix>.n.<node>.<type>`); the outcome is
 * classified into the next step:
 *
 * | outcome                                  | next                                             |
 * | ---------------------------------------- | ------------------------------------------------ |
 * | a reply, or the handler's error          | settle the call                                  |
 * | `redirect(node, revision)`               | learn the location, decide again (nothing ran)   |
 * | `retry` (closing node), `no_responders`  | avoid that node for this call, back off, decide  |
 * | the node died with it                    | resend if that cannot apply it twice, else `unavailable` |
 * | no answer in time                        | a keyed ask is resent with its time left, else `timeout` |
 * | too large for the mesh, mesh closed      | `bad_payload`, `unavailable`                     |
 *
 * Requests go to one node, never to an actor's subject, so a node declared dead takes no new
 * ones: there is no stale subscription to avoid, and the only requests to move are the ones
 * waiting on it.
 *
 * @module
 */

import type { Logger } from "../actor/envelope.ts";
import { pumpStream, type StreamChannel } from "../actor/stream.ts";
import { checkPayloadSize } from "../codec/mod.ts";
import type { Codec } from "../codec/types.ts";
import type { Membership } from "../directory/membership.ts";
import { BadPayloadError, TimeoutError, UnavailableError } from "../errors.ts";
import { type MeshConnection, MeshError, type RequestHandle } from "../mesh/types.ts";
import {
  decodeReply,
  encodeRequest,
  encodeRequestBytes,
  NotProcessed,
  Redirected,
  type WireRequest,
} from "../mesh/wire.ts";
import { delay } from "../util/async.ts";
import type { Clock } from "../util/clock.ts";
import type { Call } from "./call.ts";
import { openRemoteStream, RemoteSink, StreamReceiver } from "./remote_stream.ts";
import type { Decision, Router } from "./router.ts";
import type { Subjects } from "./subjects.ts";

/** What remote routing needs from its node. */
export interface RemoteDeps {
  readonly node: string;
  readonly conn: MeshConnection;
  readonly subjects: Subjects;
  readonly membership: Membership;
  readonly router: Router;
  readonly log: Logger;
  /** The node's clock (deadlines, back-off). */
  readonly clock: Clock;
  readonly wireCodec: Codec;
  readonly maxPayload: number;
  /** Hands a call to this node's local delivery (the router chose this node). */
  deliverHere(call: Call): void;
  /** Inbox prefixes stream frames and credit may go to. */
  readonly replyPrefixes: readonly string[];
}

const MAX_ATTEMPTS = 100;
/** Redirects one call may follow before it gives up (owners moving faster than it). */
const MAX_REDIRECTS = 8;
/** The shortest attempt of a request split in two (see `#attemptTimeout`). */
const MIN_ATTEMPT_MS = 500;

/**
 * A request waiting for its answer, to move when the node holding it is declared gone: the
 * mesh sets `cancel` while it waits.
 */
interface Wait extends RequestHandle {
  readonly node: string;
  /** Why it was moved, once it was. */
  moved?: Error;
}

/** What one attempt came to. */
type Outcome =
  | { readonly kind: "done" }
  | { readonly kind: "redirect"; readonly node: string; readonly revision: number }
  | { readonly kind: "refused"; readonly node: string }
  | { readonly kind: "lost"; readonly node: string; readonly error: Error }
  | { readonly kind: "late"; readonly node: string }
  | { readonly kind: "failed"; readonly error: unknown };

const DONE: Outcome = Object.freeze({ kind: "done" });

/** Routes calls of one node to other nodes. */
export class Remote {
  readonly #deps: RemoteDeps;
  readonly #waits = new Set<Wait>();
  readonly #offMembership: () => void;

  constructor(deps: RemoteDeps) {
    this.#deps = deps;
    this.#offMembership = deps.membership.on((e) => {
      if (e.type === "node_left") this.#gone(e.node.id);
    });
  }

  /**
   * `node` left or was declared dead: the requests waiting on it move now (a request sent to a
   * node's inbox reached that node alone, so nothing else will answer it).
   */
  #gone(node: string): void {
    const gone = new UnavailableError(`Node "${node}" left the cluster`);
    for (const w of this.#waits) {
      if (w.node !== node) continue;
      w.moved = gone;
      w.cancel?.(gone);
    }
  }

  /**
   * Sends a call to the node the router picks (or delivers it here when that is this node);
   * `first`: the router's decision already made for it.
   */
  send(call: Call, first?: Decision): void {
    void this.#send(call, first);
  }

  async #send(call: Call, first: Decision | undefined): Promise<void> {
    const d = this.#deps;
    let body: Uint8Array | undefined;
    let payload: Uint8Array | undefined;
    /** Nodes to leave out of this call's decisions. */
    let avoid: Set<string> | undefined;
    /** Nodes that did not take it at all (not listening, closing, gone). */
    let down: Set<string> | undefined;
    let backoff = 10;
    let redirects = 0;
    // The caller's input stream goes out through one producer, whichever node ends up reading
    // it: that node names its inbox in its first credit frame.
    const input = call.input ? sendInput(d, call.input, call.deadline) : undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (call.settled) return; // the caller gave up (deadline, signal)
      const left = call.deadline - d.clock.monotonic();
      if (left <= 0) {
        return call.reject(
          d.router.hasHosts(call.type)
            ? new TimeoutError(`Message to ${call.target}.${call.handler} timed out`)
            : new UnavailableError(`No live node hosts actor type "${call.type}" now`),
        );
      }
      const decision = first ?? d.router.decide(call, avoid);
      first = undefined;
      if (decision.to === "local") return d.deliverHere(call);
      if (decision.to === "none") {
        if (decision.error) return call.reject(decision.error);
        avoid?.clear();
        await delay(d.clock, Math.min(backoff, left));
        backoff = Math.min(backoff * 2, 500);
        continue;
      }
      const node = decision.node;
      const receiver = call.kind === "stream"
        ? new StreamReceiver(
          d.clock,
          d.conn,
          d.wireCodec,
          call.sink as StreamChannel,
          `${call.target}.${call.handler}`,
          d.replyPrefixes,
        )
        : undefined;
      const req = wireRequest(call, left, d.wireCodec.contentType, receiver, input);
      try {
        if (payload === undefined) {
          // Encoded once, with the first envelope; later attempts reuse the payload's bytes.
          const encoded = encodeRequest(req, d.wireCodec, call.input ? null : call.payload);
          body = encoded.body;
          payload = body.subarray(encoded.payloadStart);
          checkPayloadSize(
            payload.byteLength,
            d.maxPayload,
            `Message to ${call.target}.${call.handler}`,
          );
        } else body = encodeRequestBytes(req, payload);
      } catch (err) {
        receiver?.abandon();
        return call.reject(err);
      }
      const outcome = await this.#attempt(call, node, body!, left, receiver);
      switch (outcome.kind) {
        case "done":
          return;
        case "redirect":
          if (down?.has(outcome.node)) {
            // Sent to a node that just failed us (not listening, closing): the node that
            // redirected has not seen it go yet. Wait, then decide again: once membership says
            // it is gone, the claim takes the actor over.
            await delay(
              d.clock,
              Math.min(backoff, Math.max(0, call.deadline - d.clock.monotonic())),
            );
            backoff = Math.min(backoff * 2, 500);
            continue;
          }
          d.router.redirected(call.key, outcome.node, outcome.revision);
          if (++redirects > MAX_REDIRECTS) {
            return call.reject(
              new UnavailableError(`${call.target} moved ${MAX_REDIRECTS} times; try again`),
            );
          }
          continue;
        case "refused":
          // Nobody processed it (a closing node, or no node listening): resend elsewhere.
          d.router.unlearn(call.key);
          (avoid ??= new Set()).add(outcome.node);
          (down ??= new Set()).add(outcome.node);
          await delay(d.clock, Math.min(backoff, Math.max(0, call.deadline - d.clock.monotonic())));
          backoff = Math.min(backoff * 2, 500);
          continue;
        case "lost":
          // The node went away with the message: it may or may not have been handled.
          if (!resendable(call)) {
            return call.reject(
              new UnavailableError(
                `The node handling ${call.target}.${call.handler} failed (${outcome.error.message})`,
                { cause: outcome.error },
              ),
            );
          }
          d.router.unlearn(call.key);
          (avoid ??= new Set()).add(outcome.node);
          (down ??= new Set()).add(outcome.node);
          continue;
        case "late":
          if (call.deadline - d.clock.monotonic() > 0 && resendable(call)) {
            // No answer in its share of the time: lost or slow, and safe to send again.
            (avoid ??= new Set()).add(outcome.node);
            continue;
          }
          return call.reject(
            new TimeoutError(`Message to ${call.target}.${call.handler} timed out`),
          );
        case "failed":
          return call.reject(outcome.error);
      }
    }
    call.reject(
      new UnavailableError(`Could not route ${call.target} after ${MAX_ATTEMPTS} attempts`),
    );
  }

  /** One request to `node`; settles the call when the answer is final. */
  async #attempt(
    call: Call,
    node: string,
    body: Uint8Array,
    left: number,
    receiver: StreamReceiver | undefined,
  ): Promise<Outcome> {
    const d = this.#deps;
    const subject = d.subjects.hosted(node, call.type);
    const wait: Wait = { node };
    this.#waits.add(wait);
    try {
      if (receiver) {
        await openRemoteStream(d.conn, d.wireCodec, {
          subject,
          data: body,
          timeout: left,
          handle: wait,
          receiver,
        });
        call.accept(); // the items flow; the call is over when the stream is
        return DONE;
      }
      const reply = await d.conn.request(subject, body, {
        timeout: attemptTimeout(call, left),
        handle: wait,
      });
      const value = decodeReply(reply.data, d.wireCodec);
      call.accept();
      call.resolve(value, true);
      return DONE;
    } catch (err) {
      if (wait.moved !== undefined && err === wait.moved) {
        return { kind: "lost", node, error: wait.moved };
      }
      if (err instanceof Redirected) {
        return { kind: "redirect", node: err.node, revision: err.revision };
      }
      // "No responders" means nobody received it; a `retry` answer that nothing was processed.
      if (
        err instanceof NotProcessed || (err instanceof MeshError && err.code === "no_responders")
      ) {
        return { kind: "refused", node };
      }
      if (err instanceof MeshError && err.code === "timeout") return { kind: "late", node };
      if (err instanceof MeshError && err.code === "max_payload") {
        return {
          kind: "failed",
          error: new BadPayloadError(
            `Message to ${call.target}.${call.handler} is too large for the mesh`,
            { cause: err },
          ),
        };
      }
      if (err instanceof MeshError) {
        return {
          kind: "failed",
          error: new UnavailableError(`Mesh failed for ${call.target}: ${err.message}`, {
            cause: err,
          }),
        };
      }
      return { kind: "failed", error: err };
    } finally {
      this.#waits.delete(wait);
    }
  }

  /** Stops reacting to membership; requests in flight end by their deadlines. */
  close(): void {
    this.#offMembership();
  }
}

/** The envelope of one attempt. */
function wireRequest(
  call: Call,
  left: number,
  contentType: string,
  receiver: StreamReceiver | undefined,
  input: RemoteSink | undefined,
): WireRequest {
  const r: WireRequest = {
    kind: call.kind,
    type: call.type,
    id: call.id,
    handler: call.handler,
    timeout: left,
    contentType,
    chain: call.chain,
  };
  if (call.rawIdempotencyKey !== undefined) r.idempotencyKey = call.rawIdempotencyKey;
  if (call.token !== undefined) r.token = call.token;
  if (receiver) r.streamTo = receiver.inbox;
  if (input) r.inputFrom = input.creditSubject;
  if (call.trace !== undefined) r.trace = call.trace;
  return r;
}

/**
 * An ask that is safe to resend gets half its time per attempt: a request can be lost on its
 * way (core NATS is at most once), and the second attempt still gets its answer in time.
 */
function attemptTimeout(call: Call, left: number): number {
  return call.kind === "ask" && call.rawIdempotencyKey !== undefined && left > 2 * MIN_ATTEMPT_MS
    ? Math.max(MIN_ATTEMPT_MS, left / 2)
    : left;
}

/**
 * Sends the caller's input stream to whichever node reads it, with that node's credit; it stops
 * when the reader cancels, the source ends, or the deadline passes.
 */
function sendInput(d: RemoteDeps, input: StreamChannel, deadline: number): RemoteSink {
  const sink = new RemoteSink(d.clock, d.conn, d.wireCodec, d.replyPrefixes);
  pumpStream(d.clock, input[Symbol.asyncIterator](), sink, deadline).catch((err) => sink.fail(err));
  return sink;
}

/** Safe to send again after a node died with it: nothing can be applied twice. */
function resendable(call: Call): boolean {
  return call.kind === "tell" || call.rawIdempotencyKey !== undefined;
}
