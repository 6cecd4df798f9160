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
import { type ActorRef, type Caller, type CallOrigin, makeRef } from "./ref.ts";
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
    };
  }
  get self(): ActorRef<AnyActorTypes> {
    return makeRef(this.#host.dispatcher, this.#act.def, this.#act.id, this.#callOrigin);
  }
  ref<T extends ActorTypes>(def: ActorDefinition<T>, id = ""): ActorRef<T> {
    return makeRef(this.#host.dispatcher, def, id, this.#callOrigin);
  }
  publish(topic: string, payload: unknown): void {
    this.#act.stagePublish(topic, payload);
  }
  get signal(): AbortSignal {
    if (!this.#controller) {
      const c = this.#controller = new AbortController();
      const left = this.#m.deadline - performance.now();
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
      due: Date.now() + delayMs,
      ...traceField(),
    });
  }
}
