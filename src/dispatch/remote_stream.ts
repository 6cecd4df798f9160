/**
 * Streams across the mesh, with credit-based flow control: the producer sends items as
 * `{t:"item",v}` frames to the consumer's inbox only while it has credit; the consumer grants
 * `window` credits up front and one more per item its bounded channel accepts. `{t:"end"}` and
 * `{t:"error",code,message,data}` end the stream; `{t:"cancel"}` from the consumer stops the
 * producer. Either side gives up after {@link STREAM_IDLE_MS} of silence from the other.
 *
 * @module
 */

import type { StreamChannel } from "../actor/stream.ts";
import type { Codec } from "../codec/types.ts";
import { BadPayloadError, ClosedError, TimeoutError, toWireError } from "../errors.ts";
import type { MeshConnection, MeshSubscription, RequestHandle } from "../mesh/types.ts";
import { decodeReply, wireErrorOf } from "../mesh/wire.ts";
import { isReplySubject } from "./subjects.ts";
import type { Clock, TimerId } from "../util/clock.ts";

/** Longest silence of either side of a remote stream before it is ended (ms). */
export const STREAM_IDLE_MS = 30_000;

/**
 * The consuming side of a remote stream: frames arriving on {@link inbox} go into a local
 * bounded channel; credit goes back to the producer, `window` up front and one per item the
 * channel accepts. Cancelling the channel cancels the producer; silence from the producer for
 * {@link STREAM_IDLE_MS} ends the stream with `timeout`.
 */
export class StreamReceiver {
  /** Where the producer sends its frames. */
  readonly inbox: string;
  readonly #clock: Clock;
  readonly #conn: MeshConnection;
  readonly #codec: Codec;
  readonly #sink: StreamChannel;
  readonly #what: string;
  readonly #prefixes: readonly string[];
  readonly #sub: MeshSubscription;
  #creditTo: string | undefined;
  #idle: TimerId | undefined;
  #done = false;

  /**
   * Subscribes a fresh inbox feeding `sink`; `what` names the stream in errors; credit goes
   * only to subjects under `prefixes` (see `isReplySubject`); the idle bound runs on `clock`.
   */
  constructor(
    clock: Clock,
    conn: MeshConnection,
    codec: Codec,
    sink: StreamChannel,
    what: string,
    prefixes: readonly string[],
  ) {
    this.#clock = clock;
    this.#conn = conn;
    this.#codec = codec;
    this.#sink = sink;
    this.#what = what;
    this.#prefixes = prefixes;
    this.inbox = conn.inbox();
    this.#sub = conn.subscribe(this.inbox, (msg) => this.#frame(msg.data));
    sink.signal.addEventListener("abort", () => {
      this.#send({ t: "cancel" });
      this.#stop();
    }, { once: true });
  }

  /** The producer is known: grant the first window (telling it where items go). */
  start(creditTo: string): void {
    if (this.#done) return;
    if (!isReplySubject(creditTo, this.#prefixes)) {
      this.#stop();
      return this.#sink.error(new BadPayloadError("Stream credit subject is not an inbox"));
    }
    this.#creditTo = creditTo;
    if (this.#sink.signal.aborted) return void this.#send({ t: "cancel" });
    this.#armIdle();
    this.#send({ t: "credit", n: this.#sink.window, to: this.inbox });
  }

  /** Stops listening without a word to the producer (the call failed before it started). */
  abandon(): void {
    this.#stop();
  }

  #frame(data: Uint8Array): void {
    if (this.#done) return;
    this.#armIdle();
    try {
      const f = this.#codec.decode(data) as { t: string; v?: unknown };
      if (f.t === "item") {
        void this.#sink.push(f.v).then(() => this.#send({ t: "credit", n: 1 }), () => {});
      } else if (f.t === "end") {
        this.#stop();
        this.#sink.end();
      } else if (f.t === "error") {
        this.#stop();
        this.#sink.error(wireErrorOf(f)); // the producer's error, as an ActorError
      }
    } catch (err) {
      this.#stop();
      this.#sink.error(new BadPayloadError("Bad stream frame", { cause: err }));
    }
  }

  #armIdle(): void {
    this.#clock.clearTimeout(this.#idle);
    // A producer that goes silent (its node died) must not leave the consumer waiting forever.
    this.#idle = this.#clock.setTimeout(() => {
      this.#sink.error(
        new TimeoutError(`Stream ${this.#what} sent nothing for ${STREAM_IDLE_MS} ms`),
      );
      this.#send({ t: "cancel" });
      this.#stop();
    }, STREAM_IDLE_MS);
  }

  #send(frame: Record<string, unknown>): void {
    if (this.#creditTo === undefined) return;
    try {
      this.#conn.publish(this.#creditTo, this.#codec.encode(frame));
    } catch { /* closed */ }
  }

  #stop(): void {
    this.#done = true;
    this.#clock.clearTimeout(this.#idle);
    this.#sub.unsubscribe();
  }
}

/** What the consumer side needs to open a stream. */
export interface OpenStream {
  /** Where the request goes (a node's inbox for the type). */
  subject: string;
  /** The request body (envelope with the receiver's inbox, then the payload). */
  data: Uint8Array;
  /** Ms to wait for the producer to accept. */
  timeout: number;
  /** Receives the request's cancel function (the node it went to may die). */
  handle?: RequestHandle;
  /** Receives the items. */
  receiver: StreamReceiver;
}

/** Consumer side: sends the stream request, then lets the receiver grant credit. */
export async function openRemoteStream(
  conn: MeshConnection,
  codec: Codec,
  o: OpenStream,
): Promise<void> {
  try {
    const reply = await conn.request(o.subject, o.data, {
      timeout: o.timeout,
      ...(o.handle ? { handle: o.handle } : {}),
    });
    const value = decodeReply(reply.data, codec) as { credit?: unknown } | null;
    if (typeof value?.credit !== "string") {
      throw new BadPayloadError("Stream reply without a credit inbox");
    }
    o.receiver.start(value.credit);
  } catch (err) {
    o.receiver.abandon();
    throw err;
  }
}

/** The producer side of a remote stream: sends frames, waits for credit. */
export class RemoteSink {
  readonly creditSubject: string;
  readonly #clock: Clock;
  readonly #conn: MeshConnection;
  readonly #codec: Codec;
  readonly #prefixes: readonly string[];
  #to: string | undefined;
  readonly #controller = new AbortController();
  readonly #sub: MeshSubscription;
  #credit = 0;
  #waiter: (() => void) | undefined;
  #ended = false;

  /**
   * `to`: the consumer's inbox; without it, the consumer names it in its first credit frame.
   * The idle bound runs on `clock`.
   */
  constructor(
    clock: Clock,
    conn: MeshConnection,
    codec: Codec,
    prefixes: readonly string[],
    to?: string,
  ) {
    this.#clock = clock;
    this.#conn = conn;
    this.#codec = codec;
    this.#prefixes = prefixes;
    this.#to = to;
    this.creditSubject = conn.inbox();
    this.#sub = conn.subscribe(this.creditSubject, (msg) => {
      try {
        const f = codec.decode(msg.data) as { t: string; n?: number; to?: unknown };
        if (f.t === "credit" && typeof f.n === "number") {
          if (
            this.#to === undefined && typeof f.to === "string" &&
            isReplySubject(f.to, this.#prefixes)
          ) {
            this.#to = f.to;
          }
          if (this.#to === undefined) return;
          this.#credit += f.n;
          this.#wake();
        } else if (f.t === "cancel") {
          this.#controller.abort(new ClosedError("The stream was cancelled by its consumer"));
          this.#wake();
          this.#close();
        }
      } catch {
        // ignore malformed credit frames
      }
    });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  async push(item: unknown): Promise<void> {
    if (this.#ended) throw new ClosedError("The stream has ended");
    while (this.#credit <= 0) {
      if (this.#controller.signal.aborted) throw this.#controller.signal.reason;
      let timer: TimerId | undefined;
      await new Promise<void>((r) => {
        this.#waiter = r;
        timer = this.#clock.setTimeout(() => {
          // The consumer went silent (its node died, or it stopped reading for too long).
          this.#controller.abort(
            new TimeoutError(`Stream consumer granted no credit for ${STREAM_IDLE_MS} ms`),
          );
          this.#close();
          r();
        }, STREAM_IDLE_MS);
      });
      this.#clock.clearTimeout(timer);
    }
    if (this.#controller.signal.aborted) throw this.#controller.signal.reason;
    this.#credit--;
    this.#conn.publish(this.#to!, this.#codec.encode({ t: "item", v: item }));
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    try {
      if (this.#to !== undefined) this.#conn.publish(this.#to, this.#codec.encode({ t: "end" }));
    } catch { /* closed */ }
    this.#close();
  }

  error(err: unknown): void {
    this.fail(err);
  }

  fail(err: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    try {
      if (this.#to !== undefined) {
        const w = toWireError(err);
        let frame: Uint8Array;
        try {
          frame = this.#codec.encode({ t: "error", ...w });
        } catch {
          frame = this.#codec.encode({ t: "error", code: w.code, message: w.message });
        }
        this.#conn.publish(this.#to, frame);
      }
    } catch { /* closed */ }
    this.#close();
  }

  /** Ends without a word to the consumer (a fenced node stays silent). */
  abandon(): void {
    this.#ended = true;
    this.#close();
  }

  #close(): void {
    this.#sub.unsubscribe();
  }
}
