/**
 * The duplex route: a WebSocket whose text frames in are the handler's input stream (one
 * JSON value per frame) and whose frames out are the handler's items (one JSON value per
 * frame). The handler's end closes the socket with 1000; its failure sends one frame
 * `{ "error": { "code", "message" } }` and closes with 1011. A client that closes the socket
 * ends the input and cancels the stream.
 *
 * @module
 */

import { type ActorStream, json } from "../../mod.ts";
import { errorBody } from "./_errors.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Options of {@link duplexSocket}. */
export interface DuplexOptions {
  /** Input items received and not yet taken by the handler before the socket is closed (1008). */
  maxBuffered: number;
  /** Largest text frame, bytes (bigger ones close the socket with 1009). */
  maxFrame: number;
}

/**
 * The input items of a socket, as an `AsyncIterable`: frames are queued until the handler
 * takes them; the queue is bounded (the client must not run ahead of the handler by more than
 * `maxBuffered` items).
 */
class Inbox implements AsyncIterable<unknown> {
  readonly #items: unknown[] = [];
  #waiting: ((r: IteratorResult<unknown>) => void) | undefined;
  #ended = false;
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  /** Queues an item; false when the queue is full. */
  push(item: unknown): boolean {
    if (this.#ended) return true;
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = undefined;
      w({ done: false, value: item });
      return true;
    }
    if (this.#items.length >= this.#max) return false;
    this.#items.push(item);
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
        if (this.#items.length > 0) {
          return Promise.resolve({ done: false, value: this.#items.shift() });
        }
        if (this.#ended) return Promise.resolve({ done: true, value: undefined });
        return new Promise((resolve) => (this.#waiting = resolve));
      },
      return: () => {
        this.end();
        this.#items.length = 0;
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }
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
  const { socket, response } = Deno.upgradeWebSocket(req);
  const inbox = new Inbox(options.maxBuffered);
  let stream: ActorStream<unknown> | undefined;
  let closed = false;
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
        socket.send(decoder.decode(json.encode(item)));
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
    if (typeof event.data !== "string") return close(1003, "send text frames of JSON");
    if (encoder.encode(event.data).byteLength > options.maxFrame) {
      return close(1009, `frames are limited to ${options.maxFrame} bytes`);
    }
    let item: unknown;
    try {
      item = json.decode(encoder.encode(event.data));
    } catch {
      return close(1007, "a frame is not valid JSON");
    }
    if (!inbox.push(item)) close(1008, `more than ${options.maxBuffered} items unread`);
  };
  socket.onclose = () => {
    closed = true;
    inbox.end();
    stream?.cancel().catch(() => {});
  };
  socket.onerror = () => {
    closed = true;
    inbox.end();
    stream?.cancel().catch(() => {});
  };
  return response;
}
