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
import { codecFor } from "../codec/mod.ts";
import type { Codec } from "../codec/types.ts";
import { BadPayloadError, ClosedError, TimeoutError } from "../errors.ts";
import type { MeshConnection, MeshHeaders, MeshSubscription } from "../mesh/types.ts";
import { decodeReply, errorReply, H } from "../mesh/wire.ts";

/** Longest silence of either side of a remote stream before it is ended (ms). */
export const STREAM_IDLE_MS = 30_000;

/** What the consumer side needs to open a stream. */
export interface OpenStream {
  /** Where the request goes (actor or node subject). */
  subject: string;
  /** The encoded payload. */
  data: Uint8Array;
  /** The envelope headers (with the consumer's inbox). */
  headers: MeshHeaders;
  /** Ms to wait for the producer to accept. */
  timeout: number;
  /** The consumer's inbox for frames. */
  inbox: string;
  /** Handler name, for messages. */
  handler: string;
  /** The local channel the items go to. */
  sink: StreamChannel;
}

/** Consumer side: sends the stream request, then feeds frames into `o.sink`, granting credit. */
export async function openRemoteStream(
  conn: MeshConnection,
  codec: Codec,
  o: OpenStream,
): Promise<void> {
  const sink = o.sink;
  let creditTo: string | undefined;
  // A producer that goes silent (its node died) must not leave the consumer waiting forever.
  let idle: ReturnType<typeof setTimeout> | undefined;
  const stopIdle = () => clearTimeout(idle);
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      sink.error(new TimeoutError(`Stream ${o.handler} sent nothing for ${STREAM_IDLE_MS} ms`));
      if (creditTo) conn.publish(creditTo, codec.encode({ t: "cancel" }));
      sub.unsubscribe();
    }, STREAM_IDLE_MS);
  };
  const sub = conn.subscribe(o.inbox, (msg) => {
    armIdle();
    try {
      const f = codec.decode(msg.data) as { t: string; v?: unknown };
      if (f.t === "item") {
        void sink.push(f.v).then(() => {
          if (creditTo) conn.publish(creditTo, codec.encode({ t: "credit", n: 1 }));
        }, () => {});
      } else if (f.t === "end") {
        stopIdle();
        sink.end();
        sub.unsubscribe();
      } else if (f.t === "error") {
        stopIdle();
        sub.unsubscribe();
        let error: unknown;
        try {
          decodeReply({ ...msg, headers: { [H.status]: "error" } }, () => codec);
          error = new BadPayloadError("Stream error frame without an error");
        } catch (err) {
          error = err; // the producer's error, as an ActorError
        }
        sink.error(error);
      }
    } catch (err) {
      stopIdle();
      sink.error(new BadPayloadError("Bad stream frame", { cause: err }));
      sub.unsubscribe();
    }
  });
  sink.signal.addEventListener("abort", () => {
    stopIdle();
    if (creditTo) conn.publish(creditTo, codec.encode({ t: "cancel" }));
    sub.unsubscribe();
  }, { once: true });
  try {
    const reply = await conn.request(o.subject, o.data, {
      headers: o.headers,
      timeout: o.timeout,
    });
    const value = decodeReply(reply, codecFor, codec.contentType) as { credit: string };
    creditTo = value.credit;
    if (sink.signal.aborted) {
      conn.publish(creditTo, codec.encode({ t: "cancel" }));
      return;
    }
    armIdle();
    conn.publish(creditTo, codec.encode({ t: "credit", n: sink.window }));
  } catch (err) {
    stopIdle();
    sub.unsubscribe();
    throw err;
  }
}

/** The producer side of a remote stream: sends frames, waits for credit. */
export class RemoteSink {
  readonly creditSubject: string;
  readonly #conn: MeshConnection;
  readonly #codec: Codec;
  readonly #to: string;
  readonly #controller = new AbortController();
  readonly #sub: MeshSubscription;
  #credit = 0;
  #waiter: (() => void) | undefined;
  #ended = false;

  constructor(conn: MeshConnection, codec: Codec, to: string) {
    this.#conn = conn;
    this.#codec = codec;
    this.#to = to;
    this.creditSubject = conn.inbox();
    this.#sub = conn.subscribe(this.creditSubject, (msg) => {
      try {
        const f = codec.decode(msg.data) as { t: string; n?: number };
        if (f.t === "credit" && typeof f.n === "number") {
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
    while (this.#credit <= 0) {
      if (this.#controller.signal.aborted) throw this.#controller.signal.reason;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiter = r;
        timer = setTimeout(() => {
          // The consumer went silent (its node died, or it stopped reading for too long).
          this.#controller.abort(
            new TimeoutError(`Stream consumer granted no credit for ${STREAM_IDLE_MS} ms`),
          );
          this.#close();
          r();
        }, STREAM_IDLE_MS);
      });
      clearTimeout(timer);
    }
    if (this.#controller.signal.aborted) throw this.#controller.signal.reason;
    this.#credit--;
    this.#conn.publish(this.#to, this.#codec.encode({ t: "item", v: item }));
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    try {
      this.#conn.publish(this.#to, this.#codec.encode({ t: "end" }));
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
      const r = errorReply(this.#codec, err);
      const w = this.#codec.decode(r.data) as object;
      this.#conn.publish(this.#to, this.#codec.encode({ t: "error", ...w }));
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
