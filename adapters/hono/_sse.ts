/**
 * Server-Sent Events from an actor stream: one `data:` line of JSON per item, `event: end`
 * when the handler returns, `event: error` with `{ code, message }` when it fails. The body
 * is pulled: the next item is asked for only once the last one was taken by the connection,
 * so the actor stream's credit window is the only buffer. A closed connection cancels the
 * stream (the handler's generator is closed), and so does a client that takes nothing for
 * `stallTimeout` ms (its connection is cut).
 *
 * @module
 */

import type { ActorStream } from "../../mod.ts";
import { json } from "../../spi.ts";
import { errorBody } from "./_errors.ts";
import { systemClock, type TimerId } from "../../spi.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Options of {@link sseResponse}. */
export interface SseOptions {
  /** Milliseconds between `: keep-alive` comments while no item comes; 0 turns them off. */
  keepAlive: number;
  /** Headers to add (CORS, …). */
  headers?: HeadersInit;
  /** Called once when the stream is over (ended, failed, or cancelled by the client). */
  onDone?: () => void;
  /** Ms an item may wait for the client to take it; then the stream is cancelled. */
  stallTimeout?: number;
  /** The SSE message of one item, ending in a blank line. @default {`data: <json>`} */
  format?: (item: unknown) => string;
}

/** One `data:` line of JSON. */
function dataOf(item: unknown): string {
  return `data: ${decoder.decode(json.encode(item))}\n\n`;
}

/** Makes the SSE response of a stream. */
export function sseResponse(stream: ActorStream<unknown>, options: SseOptions): Response {
  const items = stream[Symbol.asyncIterator]();
  const format = options.format ?? dataOf;
  let finished = false;
  // Real time, not the system's clock: keep-alives and the stall bound face a real socket.
  const clock = systemClock;
  let timer: TimerId | undefined;
  let stall: TimerId | undefined;
  const finish = () => {
    if (finished) return;
    finished = true;
    if (timer !== undefined) clock.clearInterval(timer);
    timer = undefined;
    clock.clearTimeout(stall);
    options.onDone?.();
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(": stream\n\n"));
      if (options.keepAlive > 0) {
        timer = clock.setInterval(() => {
          if (!finished) controller.enqueue(encoder.encode(": keep-alive\n\n"));
        }, options.keepAlive);
      }
    },
    async pull(controller) {
      clock.clearTimeout(stall); // the client took the last chunk
      let chunk: string;
      try {
        const next = await items.next();
        if (finished) return;
        if (next.done) {
          chunk = "event: end\ndata: null\n\n";
          finish();
        } else {
          chunk = format(next.value);
        }
      } catch (err) {
        if (finished) return;
        const { code, message } = errorBody(err).error;
        chunk = `event: error\ndata: ${JSON.stringify({ code, message })}\n\n`;
        finish();
        await stream.cancel().catch(() => {});
      }
      controller.enqueue(encoder.encode(chunk));
      if (finished) return controller.close();
      if (options.stallTimeout !== undefined) {
        // the next pull comes when the connection took this chunk: a client that reads
        // nothing must not hold the actor stream (and its node's resources) for ever
        stall = clock.setTimeout(() => {
          finish();
          stream.cancel().catch(() => {});
          controller.error(new Error("The client took nothing for too long"));
        }, options.stallTimeout);
      }
    },
    async cancel() {
      finish();
      await stream.cancel();
    },
  }, { highWaterMark: 0 });
  const headers = new Headers(options.headers);
  headers.set("content-type", "text/event-stream; charset=utf-8");
  headers.set("cache-control", "no-cache");
  headers.set("x-accel-buffering", "no");
  return new Response(body, { status: 200, headers });
}
