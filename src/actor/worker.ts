/**
 * Stateless workers: many concurrent instances of one type per node, with a bounded queue.
 *
 * @module
 */

import { OverloadedError, TimeoutError } from "../errors.ts";
import type { ActorDefinition, AnyActorTypes } from "./define.ts";
import type { Envelope } from "./envelope.ts";
import { pumpStream } from "./stream.ts";
import { type ActivationHost, callerError } from "./activation.ts";
import { TurnContext, type TurnScope } from "./turn_context.ts";
import { type Deferred, deferred } from "../util/async.ts";
import type { TypeStats } from "../observe/node.ts";

/** The instances of one stateless worker type on this node; `M` is the node's message type. */
export class WorkerPool<M extends Envelope = Envelope> {
  /** The definition. */
  readonly def: ActorDefinition<AnyActorTypes>;
  readonly #host: ActivationHost<M>;
  readonly #stats: TypeStats;
  readonly #queue: M[] = [];
  #running = 0;
  #turns = 0;
  #idle: Deferred<void> | undefined;

  constructor(host: ActivationHost<M>, def: ActorDefinition<AnyActorTypes>) {
    this.#host = host;
    this.def = def;
    this.#stats = host.observer.type(def.name);
  }

  /** Messages running or queued. */
  get load(): number {
    return this.#running + this.#queue.length;
  }

  /** Messages queued. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Queues a message and returns true, or rejects it with `overloaded` and returns false. */
  enqueue(m: M): boolean {
    if (this.#queue.length >= this.def.mailboxSize) {
      m.reject(
        new OverloadedError(
          `Queue of worker type "${this.def.name}" is full (${this.def.mailboxSize} messages)`,
        ),
      );
      return false;
    }
    this.#queue.push(m);
    m.accept(); // before the handler can run: a tell is answered by its acceptance alone
    this.#pump();
    return true;
  }

  /** Resolves once nothing runs or waits (new messages may still arrive meanwhile). */
  idle(): Promise<void> {
    if (this.load === 0) return Promise.resolve();
    return (this.#idle ??= deferred()).promise;
  }

  #pump(): void {
    while (this.#running < this.def.concurrency && this.#queue.length > 0) {
      const m = this.#queue.shift()!;
      if (this.#host.clock.monotonic() > m.deadline) {
        m.reject(new TimeoutError(`Message to ${this.def.name}.${m.handler} expired in the queue`));
        continue;
      }
      this.#running++;
      this.#host.observer.turn(this.#stats, "", m, this.#run, this)!.finally(() => {
        this.#running--;
        this.#pump();
      });
    }
    if (this.load === 0 && this.#idle) {
      const idle = this.#idle;
      this.#idle = undefined;
      idle.resolve();
    }
  }

  async #run(m: M): Promise<void> {
    const host = this.#host;
    const def = this.def;
    const scope: TurnScope = {
      id: "",
      key: def.name,
      def,
      state: undefined,
      seq: 0,
      emit() {
        throw new TypeError(`Stateless worker type "${def.name}" cannot emit events`);
      },
      stagePublish(topic, payload, durable) {
        host.publish(topic, payload, { durable: durable === true }).catch((err) =>
          host.log.warn(`Publish to "${topic}" failed`, { error: String(err) })
        );
      },
      schedule() {
        throw new TypeError(`Stateless worker type "${def.name}" cannot schedule reminders`);
      },
      cancel() {
        throw new TypeError(`Stateless worker type "${def.name}" has no reminders to cancel`);
      },
      turnId: `${def.name}#w${++this.#turns}`,
    };
    const ctx = new TurnContext(scope, m, host);
    try {
      const result = await def.handlers[m.handler]!(ctx, m.payload);
      if (m.kind !== "stream") return m.resolve(result);
      await pumpStream(host.clock, result as AsyncIterator<unknown>, m.sink!, m.deadline);
      m.resolve(undefined);
    } catch (err) {
      const e = callerError(err, host.log, `${def.name}.${m.handler}`);
      if (m.sink) {
        m.sink.error(e);
        m.resolve(undefined);
      } else m.reject(e);
    }
  }
}
