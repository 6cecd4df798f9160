/**
 * Stateless workers: many concurrent instances of one type per node, with a bounded queue.
 *
 * @module
 */

import { OverloadedError, TimeoutError } from "../errors.ts";
import type { ActorDefinition, ActorTypes, AnyActorTypes } from "./define.ts";
import type { Context } from "./context.ts";
import type { Envelope } from "./envelope.ts";
import { pumpStream } from "./stream.ts";
import { type ActivationHost, callerError } from "./activation.ts";
import { type ActorRef, type Caller, type CallOrigin, makeRef } from "./ref.ts";

/** The instances of one stateless worker type on this node. */
export class WorkerPool {
  /** The definition. */
  readonly def: ActorDefinition<AnyActorTypes>;
  readonly #host: ActivationHost;
  readonly #queue: Envelope[] = [];
  #running = 0;

  constructor(host: ActivationHost, def: ActorDefinition<AnyActorTypes>) {
    this.#host = host;
    this.def = def;
  }

  /** Messages running or queued. */
  get load(): number {
    return this.#running + this.#queue.length;
  }

  /** Queues a message; `overloaded` when the queue is full. */
  enqueue(m: Envelope): void {
    if (this.#queue.length >= this.def.mailboxSize) {
      m.reject(
        new OverloadedError(
          `Queue of worker type "${this.def.name}" is full (${this.def.mailboxSize} messages)`,
        ),
      );
      return;
    }
    this.#queue.push(m);
    this.#pump();
  }

  #pump(): void {
    while (this.#running < this.def.concurrency && this.#queue.length > 0) {
      const m = this.#queue.shift()!;
      if (performance.now() > m.deadline) {
        m.reject(new TimeoutError(`Message to ${this.def.name}.${m.handler} expired in the queue`));
        continue;
      }
      this.#running++;
      this.#run(m).finally(() => {
        this.#running--;
        this.#pump();
      });
    }
  }

  async #run(m: Envelope): Promise<void> {
    const ctx = new WorkerCtx(this.#host, this.def, m);
    try {
      const result = await this.def.handlers[m.handler]!(ctx, m.payload);
      if (m.kind !== "stream") return m.resolve(result);
      await pumpStream(result as AsyncIterator<unknown>, m.sink!);
      m.resolve(undefined);
    } catch (err) {
      const e = callerError(err, this.#host.log, `${this.def.name}.${m.handler}`);
      if (m.sink) {
        m.sink.error(e);
        m.resolve(undefined);
      } else m.reject(e);
    }
  }
}

class WorkerCtx implements Context<undefined, Record<never, never>> {
  readonly #host: ActivationHost;
  readonly #def: ActorDefinition<AnyActorTypes>;
  readonly #m: Envelope;
  #controller: AbortController | undefined;

  constructor(host: ActivationHost, def: ActorDefinition<AnyActorTypes>, m: Envelope) {
    this.#host = host;
    this.#def = def;
    this.#m = m;
  }
  readonly id = "";
  get type(): string {
    return this.#def.name;
  }
  get node(): string {
    return this.#host.node;
  }
  state = undefined;
  readonly seq = 0;
  get caller(): Caller | undefined {
    return this.#m.caller;
  }
  emit(): void {
    throw new TypeError(`Stateless worker type "${this.#def.name}" cannot emit events`);
  }
  get #origin(): CallOrigin {
    return {
      deadline: this.#m.deadline,
      chain: this.#m.chain,
      ...(this.#m.caller ? { caller: this.#m.caller } : {}),
      ...(this.#m.token !== undefined ? { token: this.#m.token } : {}),
    };
  }
  get self(): ActorRef<AnyActorTypes> {
    return makeRef(this.#host.dispatcher, this.#def, "", this.#origin);
  }
  ref<T extends ActorTypes>(def: ActorDefinition<T>, id = ""): ActorRef<T> {
    return makeRef(this.#host.dispatcher, def, id, this.#origin);
  }
  publish(topic: string, payload: unknown): void {
    this.#host.publish(topic, payload).catch((err) =>
      this.#host.log.warn(`Publish to "${topic}" failed`, { error: String(err) })
    );
  }
  get signal(): AbortSignal {
    if (!this.#controller) {
      const c = this.#controller = new AbortController();
      this.#host.wheel.add(
        this.#m.deadline,
        () => c.abort(new TimeoutError("The caller's deadline passed")),
      );
    }
    return this.#controller.signal;
  }
  schedule(): void {
    throw new TypeError(`Stateless worker type "${this.#def.name}" cannot schedule reminders`);
  }
}
