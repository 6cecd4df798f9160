/**
 * The duplex route: a WebSocket whose text frames in are the handler's input stream (one
 * JSON value per frame) and whose frames out are the handler's items (one JSON value per
 * frame). The handler's end closes the socket with 1000; its failure sends one frame
 * `{ "error": { "code", "message" } }` and closes with 1011. A client that closes the socket
 * ends the input and cancels the stream.
 *
 * Memory is bounded in bytes both ways: input frames not yet taken by the handler may hold
 * `maxBuffered` bytes (more closes the socket with 1008), a frame over `maxFrame` closes it with
 * 1009, and output waits while more than `maxBuffered` bytes are queued for the client (the
 * actor stream's credit window then holds the producer back); a client that reads nothing for
 * `stallTimeout` is closed with 1008.
 *
 * Deno reads each WebSocket message whole before the application sees it (Deno.serve caps a
 * message at 64 MiB): a frame over `maxFrame` is refused once read, so the bound on that
 * transient memory is the number of open sockets (`limits.maxStreams`).
 *
 * @module
 */

import type { ActorStream } from "../../mod.ts";
import { json } from "../../spi.ts";
import { errorBody } from "./_errors.ts";
import { systemClock } from "../../spi.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Options of {@link duplexSocket}. */
export interface DuplexOptions {
  /** Bytes queued per direction before input closes the socket (1008) or output waits. */
  maxBuffered: number;
  /** Largest text frame, bytes (bigger ones close the socket with 1009). */
  maxFrame: number;
  /** Ms a client may read nothing while output waits, before the socket is closed (1008). */
  stallTimeout: number;
  /** Called once when the socket is done (closed either way, or never opened). */
  onDone: () => void;
}

/**
 * The input items of a socket, as an `AsyncIterable`: frames are queued until the handler
 * takes them; the queue is bounded in bytes.
 */
class Inbox implements AsyncIterable<unknown> {
  readonly #items: { value: unknown; size: number }[] = [];
  #bytes = 0;
  #waiting: ((r: IteratorResult<unknown>) => void) | undefined;
  #ended = false;
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  /** Queues an item of `size` bytes; false when that would pass the bound. */
  push(value: unknown, size: number): boolean {
    if (this.#ended) return true;
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = undefined;
      w({ done: false, value });
      return true;
    }
    if (this.#bytes + size > this.#max) return false;
    this.#items.push({ value, size });
    this.#bytes += size;
    return true;
  }

  /** Ends the input: queued items are still delivered, then the iteration ends. */
  end(): void {
    this.#ended = true;
    const w = this.#waiting;
    this.#waiting = undefined;
    w?.({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return {
      next: () => {
        const item = this.#items.shift();
        if (item !== undefined) {
          this.#bytes -= item.size;
          return Promise.resolve({ done: false, value: item.value });
        }
        if (this.#ended) return Promise.resolve({ done: true, value: undefined });
        return new Promise((resolve) => (this.#waiting = resolve));
      },
      return: () => {
        this.end();
        this.#items.length = 0;
        this.#bytes = 0;
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }
}

/**
 * Waits until the socket has at most `max` bytes queued (true), or is closed, or `stall` ms
 * passed (false). The WebSocket API has no "drained" event, so `bufferedAmount` is looked at
 * again after growing pauses (2 ms up to 50 ms).
 */
async function drained(socket: WebSocket, max: number, stall: number): Promise<boolean> {
  // Real time, not the system's clock: this waits for a real socket to drain.
  const clock = systemClock;
  const end = clock.monotonic() + stall;
  let pause = 2;
  while (socket.bufferedAmount > max) {
    if (socket.readyState !== WebSocket.OPEN || clock.monotonic() > end) return false;
    await new Promise<void>((r) => clock.setTimeout(() => r(), pause));
    pause = Math.min(50, pause * 2);
  }
  return socket.readyState === WebSocket.OPEN;
}

/**
 * Upgrades the request and runs the duplex call: `open(input)` starts the actor stream with
 * the socket's input. Returns the 101 response.
 */
export function duplexSocket(
  req: Request,
  open: (input: AsyncIterable<unknown>) => ActorStream<unknown>,
  options: DuplexOptions,
): Response {
  let upgraded: { socket: WebSocket; response: Response };
  try {
    upgraded = Deno.upgradeWebSocket(req);
  } catch (err) {
    options.onDone();
    throw err;
  }
  const { socket, response } = upgraded;
  const inbox = new Inbox(options.maxBuffered);
  let stream: ActorStream<unknown> | undefined;
  let closed = false;
  let done = false;
  const finish = () => {
    closed = true;
    inbox.end();
    stream?.cancel().catch(() => {});
    if (!done) {
      done = true;
      options.onDone();
    }
  };
  const close = (code: number, reason: string) => {
    if (closed) return;
    closed = true;
    inbox.end();
    if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
      socket.close(code, reason);
    }
  };
  socket.onopen = async () => {
    try {
      stream = open(inbox);
      for await (const item of stream) {
        if (closed) break;
        const text = decoder.decode(json.encode(item));
        // output waits while the client has more than maxBuffered bytes unread
        if (!(await drained(socket, options.maxBuffered, options.stallTimeout))) {
          close(1008, "the client reads too slowly");
          break;
        }
        if (closed) break;
        socket.send(text);
      }
      close(1000, "end");
    } catch (err) {
      if (closed) return;
      const { code, message } = errorBody(err).error;
      socket.send(JSON.stringify({ error: { code, message } }));
      close(1011, code.slice(0, 100));
    }
  };
  socket.onmessage = (event) => {
    if (closed) return;
    if (typeof event.data !== "string") return close(1003, "send text frames of JSON");
    // UTF-8 takes at least one byte per UTF-16 unit: a long string is refused before encoding
    const bytes = event.data.length > options.maxFrame ? undefined : encoder.encode(event.data);
    if (bytes === undefined || bytes.byteLength > options.maxFrame) {
      return close(1009, `frames are limited to ${options.maxFrame} bytes`);
    }
    let item: unknown;
    try {
      item = json.decode(bytes);
    } catch {
      return close(1007, "a frame is not valid JSON");
    }
    if (!inbox.push(item, bytes.byteLength)) {
      close(1008, `more than ${options.maxBuffered} bytes of input unread`);
    }
  };
  socket.onclose = finish;
  socket.onerror = finish;
  return response;
}
