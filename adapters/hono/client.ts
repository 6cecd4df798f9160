/**
 * A typed fetch client for a {@link gateway}: `api.account("alice").deposit(5)` posts to
 * `/account/alice/deposit` and resolves to the reply, typed by the handler; a streaming
 * handler is read as Server-Sent Events with `for await`.
 *
 * @module
 */

import {
  type ActorDefinition,
  type ActorError,
  type ActorTypes,
  UnavailableError,
} from "../../mod.ts";
import type { ReplyOf } from "../../spi.ts";
import {
  type Args,
  type AskKeys,
  fromWireError,
  type ItemOf,
  json,
  type StreamKeys,
} from "../../spi.ts";

/** Options of one call made through a {@link client}. */
export interface ClientCallOptions {
  /** Gives up the call (an SSE stream is closed, which cancels it on the actor). */
  signal?: AbortSignal;
  /** Sent as `Idempotency-Key`. */
  idempotencyKey?: string;
  /** A token for this call, sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** More request headers. */
  headers?: HeadersInit;
}

/** Options of {@link client}. */
export interface ClientOptions {
  /** The fetch function. @default {globalThis.fetch} */
  fetch?: typeof fetch;
  /** A token for every call (a function is asked before each call). */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /** Headers sent with every call. */
  headers?: HeadersInit;
}

/** Items of a streaming handler read over SSE; `break` or `cancel()` closes the connection. */
export interface ClientStream<T> extends AsyncIterable<T> {
  /** Closes the connection; the gateway cancels the actor stream. */
  cancel(): Promise<void>;
}

/** The handlers of one actor, as methods: ask handlers resolve, streaming ones iterate. */
export type ActorClient<T extends ActorTypes> =
  & {
    [K in AskKeys<T>]: (
      ...args: Args<T["payloads"][K], ClientCallOptions>
    ) => Promise<ReplyOf<T, K>>;
  }
  & {
    [K in StreamKeys<T>]: (
      ...args: Args<T["payloads"][K], ClientCallOptions>
    ) => ClientStream<ItemOf<T, K>>;
  };

/**
 * The client of a set of actor types, keyed by type name: `api[type](id)` gives the
 * {@link ActorClient} of one actor (no id for a stateless worker type).
 */
export type GatewayClient<R> = {
  readonly [K in keyof R]: R[K] extends ActorDefinition<infer T> ? (id?: string) => ActorClient<T>
    : never;
};

/** An {@link ActorError} from an error body: Troupe's one code → class mapping (`fromWireError`). */
function toError(code: string, message: string, data: unknown): ActorError {
  return fromWireError(data === undefined ? { code, message } : { code, message, data });
}

async function errorOf(res: Response): Promise<ActorError> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as {
      error?: { code?: unknown; message?: unknown; data?: unknown };
    };
    const e = body.error;
    if (e && typeof e.code === "string" && typeof e.message === "string") {
      return toError(e.code, e.message, e.data);
    }
  } catch {
    // not an error body
  }
  const code = res.status === 502 || res.status === 503 || res.status === 504
    ? "unavailable"
    : "internal";
  return toError(code, `HTTP ${res.status} ${res.statusText}`.trim(), undefined);
}

/** One SSE event. */
interface SseEvent {
  event: string;
  data: string;
}

/** Splits an SSE body into events (comments and unknown fields are skipped). */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += value;
      let nl: number;
      while ((nl = buffer.search(/\r\n|\r|\n/)) !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (data.length > 0) yield { event, data: data.join("\n") };
          event = "message";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          let value = colon === -1 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

const encoder = new TextEncoder();

type Send = (sse: boolean, signal: AbortSignal | undefined) => Promise<Response>;

/**
 * One call, made lazily: awaiting it (`then`) posts an ask, iterating it reads the SSE
 * stream; which one is known only from how the caller uses it. It is a real `Promise`, so
 * `catch`, `finally` and `instanceof Promise` work.
 */
class Call extends Promise<unknown> implements ClientStream<unknown> {
  static override get [Symbol.species](): PromiseConstructor {
    return Promise;
  }

  #send: Send | undefined;
  #signal: AbortSignal | undefined;
  #settle: { resolve: (v: unknown) => void; reject: (e: unknown) => void } | undefined;
  #started = false;
  readonly #abort = new AbortController();

  static make(send: Send, signal: AbortSignal | undefined): Call {
    let settle: { resolve: (v: unknown) => void; reject: (e: unknown) => void } | undefined;
    const call = new Call((resolve, reject) => (settle = { resolve, reject }));
    call.#send = send;
    call.#signal = signal;
    call.#settle = settle;
    return call;
  }

  override then<A = unknown, B = never>(
    onfulfilled?: ((value: unknown) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    if (!this.#started && this.#send && this.#settle) {
      this.#started = true;
      const { resolve, reject } = this.#settle;
      const send = this.#send;
      (async () => {
        const res = await send(false, this.#signal);
        if (!res.ok) throw await errorOf(res);
        return json.decode(new Uint8Array(await res.arrayBuffer()));
      })().then(resolve, reject);
    }
    return super.then(onfulfilled, onrejected);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<unknown> {
    const signal = this.#signal
      ? AbortSignal.any([this.#signal, this.#abort.signal])
      : this.#abort.signal;
    const res = await this.#send!(true, signal);
    if (!res.ok) throw await errorOf(res);
    if (!res.body) return;
    try {
      for await (const e of sseEvents(res.body)) {
        if (e.event === "end") return;
        if (e.event === "error") {
          const { code, message } = JSON.parse(e.data) as { code: string; message: string };
          throw toError(code, message, undefined);
        }
        yield json.decode(encoder.encode(e.data));
      }
      throw new UnavailableError("The stream was cut before its end");
    } finally {
      this.#abort.abort();
    }
  }

  cancel(): Promise<void> {
    this.#abort.abort();
    return Promise.resolve();
  }
}

function segment(s: string): string {
  return encodeURIComponent(s);
}

/**
 * An actor id as a path segment. `.` and `..` (also percent-encoded) are dot segments that
 * every URL parser removes, so they go as `~.` and `~..`, and ids of that form as one more `~`
 * (the gateway takes one `~` off: see `idFromPath` in gateway.ts).
 */
function idSegment(id: string): string {
  return encodeURIComponent(/^~*\.{1,2}$/.test(id) ? `~${id}` : id);
}

/**
 * Makes a typed client of a {@link gateway} mounted at `baseUrl`. The type argument maps
 * each actor type name to its definition's type (only types are needed: import them with
 * `import type`). Replies and items are decoded with Troupe's JSON codec, so bigint, Date,
 * Map, Set and bytes come back as such; errors are thrown as {@link ActorError}s with the
 * gateway's code (Troupe's subclass where it has one, e.g. `TimeoutError`).
 *
 * @example
 * ```ts ignore
 * import { client } from "@troupe/troupe/hono";
 * import type { Account } from "./actors.ts";
 *
 * const api = client<{ account: typeof Account }>("http://127.0.0.1:8000/api");
 * await api.account("alice").deposit(5); // 5
 * for await (const line of api.account("alice").statement()) console.log(line);
 * ```
 */
export function client<R>(baseUrl: string | URL, options: ClientOptions = {}): GatewayClient<R> {
  const base = String(baseUrl).replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const actor = (type: string, id: string | undefined) =>
    new Proxy({}, {
      get(_target, handler) {
        if (typeof handler !== "string" || handler === "then") return undefined;
        return (payload?: unknown, call: ClientCallOptions = {}) => {
          const path = id === undefined
            ? `${base}/${segment(type)}/${segment(handler)}`
            : `${base}/${segment(type)}/${idSegment(id)}/${segment(handler)}`;
          const send = async (sse: boolean, signal: AbortSignal | undefined) => {
            const headers = new Headers(options.headers);
            for (const [k, v] of new Headers(call.headers)) headers.set(k, v);
            headers.set("content-type", "application/json");
            headers.set("accept", sse ? "text/event-stream" : "application/json");
            if (call.idempotencyKey !== undefined) {
              headers.set("idempotency-key", call.idempotencyKey);
            }
            const token = call.token ??
              (typeof options.token === "function" ? await options.token() : options.token);
            if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
            const init: RequestInit = { method: "POST", headers };
            if (payload !== undefined) init.body = json.encode(payload) as Uint8Array<ArrayBuffer>;
            if (signal) init.signal = signal;
            return await doFetch(path, init);
          };
          return Call.make(send, call.signal);
        };
      },
    });
  return new Proxy({}, {
    get(_target, type) {
      if (typeof type !== "string" || type === "then") return undefined;
      return (id?: string) => actor(type, id);
    },
  }) as GatewayClient<R>;
}
