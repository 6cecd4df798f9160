/**
 * The implementation of `ctx` for one turn of an activation.
 *
 * @module
 */

import type { ConfigView } from "../config/types.ts";
import { TimeoutError } from "../errors.ts";
import type { Reminder } from "../journal/types.ts";
import type { ActorDefinition, ActorTypes, AnyActorTypes } from "./define.ts";
import type { Context } from "./context.ts";
import type { Envelope } from "./envelope.ts";
import type { ActivationHost } from "./activation.ts";
import {
  type ActorRef,
  type ActorStream,
  type Caller,
  type CallOrigin,
  type Dispatcher,
  makeRef,
} from "./ref.ts";
import { traceField } from "../observe/tracing.ts";

/** What one turn acts on: an activation, or one message of a stateless worker. */
export interface TurnScope {
  /** Actor id ("" for a worker). */
  readonly id: string;
  /** `type/id`. */
  readonly key: string;
  /** The definition. */
  readonly def: ActorDefinition<AnyActorTypes>;
  /** Current state. */
  state: unknown;
  /** Last applied seq. */
  readonly seq: number;
  /** Applies and stages an event. */
  emit(type: string, payload: unknown): void;
  /** Stages (or sends) a publish. */
  stagePublish(topic: string, payload: unknown): void;
  /** Stages a reminder. */
  schedule(reminder: Reminder): void;
  /** The id of the turn running now (call chains carry it, for deadlock detection). */
  readonly turnId: string;
  /**
   * Where the turn's messages go (`ctx.ref`, `ctx.self`) when they must wait for its commits
   * (an activation's output gate). @default {the host's dispatcher}
   */
  readonly outputs?: Dispatcher;
}

/**
 * A dispatcher whose messages leave only once `gate()` settles: `gate` is asked at the moment
 * a message is sent (undefined: nothing to wait for) and may reject (the message fails with
 * that error and is never sent).
 */
export function gatedDispatcher(
  inner: Dispatcher,
  gate: () => Promise<void> | undefined,
): Dispatcher {
  return {
    send(type, id, kind, handler, payload, options, origin) {
      const g = gate();
      if (!g) return inner.send(type, id, kind, handler, payload, options, origin);
      return g.then(() => inner.send(type, id, kind, handler, payload, options, origin));
    },
    stream(type, id, handler, payload, options, origin) {
      const g = gate();
      if (!g) return inner.stream(type, id, handler, payload, options, origin);
      return new GatedStream(
        g.then(() => inner.stream(type, id, handler, payload, options, origin)),
      );
    },
  };
}

/** A stream opened once its gate settles. */
class GatedStream implements ActorStream<unknown> {
  readonly #opened: Promise<ActorStream<unknown>>;
  #cancelled = false;
  #it: AsyncIterator<unknown> | undefined;

  constructor(opened: Promise<ActorStream<unknown>>) {
    this.#opened = opened;
    opened.then((s) => {
      if (this.#cancelled) void s.cancel();
    }, () => {});
  }

  async cancel(): Promise<void> {
    this.#cancelled = true;
    const s = await this.#opened.catch(() => undefined);
    await s?.cancel();
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return {
      next: async () => {
        if (this.#cancelled) return { value: undefined, done: true };
        this.#it ??= (await this.#opened)[Symbol.asyncIterator]();
        return await this.#it.next();
      },
      return: async () => {
        await this.cancel();
        return { value: undefined, done: true };
      },
    };
  }
}

/** The `ctx` of one turn of an activation or worker (see {@link Context}). */
export class TurnContext implements Context<unknown, Record<string, unknown>> {
  readonly #act: TurnScope;
  readonly #m: Envelope;
  readonly #host: ActivationHost<Envelope>;
  readonly #turnId: string | undefined;
  /** The config view when the turn started. */
  readonly config: ConfigView;
  #controller: AbortController | undefined;
  #origin: CallOrigin | undefined;

  /** `turnId`: this turn's id when it is not the scope's current one (lifecycle hooks). */
  constructor(act: TurnScope, m: Envelope, host: ActivationHost<Envelope>, turnId?: string) {
    this.#act = act;
    this.#m = m;
    this.#host = host;
    this.#turnId = turnId;
    this.config = host.configView();
  }

  get id(): string {
    return this.#act.id;
  }
  get type(): string {
    return this.#act.def.name;
  }
  get node(): string {
    return this.#host.node;
  }
  get state(): unknown {
    return this.#act.state;
  }
  set state(value: unknown) {
    if (this.#act.def.eventSourced) {
      throw new TypeError(
        `ctx.state of event-sourced actor type "${this.#act.def.name}" changes only through ctx.emit()`,
      );
    }
    this.#act.state = value;
  }
  get seq(): number {
    return this.#act.seq;
  }
  get caller(): Caller | undefined {
    return this.#m.caller;
  }
  emit(type: string, payload: unknown): void {
    this.#act.emit(type, payload);
  }
  get #callOrigin(): CallOrigin {
    return this.#origin ??= {
      deadline: this.#m.deadline,
      chain: [...this.#m.chain, this.#turnId ?? this.#act.turnId],
      ...(this.#m.token !== undefined ? { token: this.#m.token } : {}),
      from: this.#act.key,
    };
  }
  get self(): ActorRef<AnyActorTypes> {
    const outputs = this.#act.outputs ?? this.#host.dispatcher;
    return makeRef(outputs, this.#act.def, this.#act.id, this.#callOrigin);
  }
  ref<T extends ActorTypes>(def: ActorDefinition<T>, id = ""): ActorRef<T> {
    return makeRef(this.#act.outputs ?? this.#host.dispatcher, def, id, this.#callOrigin);
  }
  publish(topic: string, payload: unknown): void {
    this.#act.stagePublish(topic, payload);
  }
  get signal(): AbortSignal {
    if (!this.#controller) {
      const c = this.#controller = new AbortController();
      const left = this.#m.deadline - this.#host.clock.monotonic();
      if (left <= 0) c.abort(new TimeoutError("The caller's deadline passed"));
      else {
        this.#host.wheel.add(
          this.#m.deadline,
          () => c.abort(new TimeoutError("The caller's deadline passed")),
        );
      }
    }
    return this.#controller.signal;
  }
  schedule(delayMs: number, handler: string, payload?: unknown): void {
    if (!Number.isFinite(delayMs) || delayMs < 0) {
      throw new RangeError(`ctx.schedule() needs a delay ≥ 0 ms, got ${delayMs}`);
    }
    if (!(handler in this.#act.def.handlers)) {
      throw new TypeError(`ctx.schedule(): actor type "${this.type}" has no handler "${handler}"`);
    }
    this.#act.schedule({
      id: crypto.randomUUID(),
      actor: this.#act.key,
      handler,
      data: this.#host.storage.encode(payload),
      due: this.#host.clock.now() + delayMs,
      ...traceField(),
      // It runs with the identity that scheduled it (as verified now), never with more.
      ...(this.caller
        ? { caller: this.#host.storage.encode({ ...this.caller, roles: [...this.caller.roles] }) }
        : {}),
    });
  }
}
