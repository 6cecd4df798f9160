/**
 * The implementation of `ctx` for one turn of an activation.
 *
 * @module
 */

import type { ConfigView } from "../config/types.ts";
import { TimeoutError } from "../errors.ts";
import type { Reminder } from "../journal/types.ts";
import type { Codec } from "../codec/types.ts";
import type { TimerWheel } from "../util/async.ts";
import type { Clock } from "../util/clock.ts";
import type {
  ActorDefinition,
  ActorTypes,
  AnyActorTypes,
  Context,
  ContextPublishOptions,
} from "./define.ts";
import { namedReminderId, nextCronRun } from "./cron.ts";
import type { Envelope } from "./envelope.ts";
import {
  type ActorRef,
  type ActorStream,
  type Caller,
  type CallOrigin,
  type Dispatcher,
  makeRef,
} from "./ref.ts";
import { traceField } from "../observe/tracing.ts";

/**
 * What a turn's context needs from its node (an activation's host has all of it, and more:
 * `ActivationHost` in activation.ts extends this).
 */
export interface TurnHost {
  /** This node's id. */
  readonly node: string;
  /** The node's clock: deadlines, reminders' due times. */
  readonly clock: Clock;
  /** Codec for stored events, snapshots and replies. */
  readonly storage: Codec;
  /** Sends messages (for `ctx.ref`). */
  readonly dispatcher: Dispatcher;
  /** Deadlines. */
  readonly wheel: TimerWheel;
  /** The node's config as it is now (a turn keeps the one it started with). */
  configView(): ConfigView;
}

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
  /** Stages (or sends) a publish; `durable`: into the turn's outbox (with its commit). */
  stagePublish(topic: string, payload: unknown, durable?: boolean): void;
  /** Stages a reminder. */
  schedule(reminder: Reminder): void;
  /** Stages the cancellation of a reminder (by id). */
  cancel(id: string): void;
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
    send(type, id, kind, handler, payload, options, origin, key) {
      const g = gate();
      if (!g) return inner.send(type, id, kind, handler, payload, options, origin, key);
      return g.then(() => inner.send(type, id, kind, handler, payload, options, origin, key));
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
  readonly #host: TurnHost;
  readonly #turnId: string | undefined;
  /** The config view when the turn started. */
  readonly config: ConfigView;
  #controller: AbortController | undefined;
  #origin: CallOrigin | undefined;

  /** `turnId`: this turn's id when it is not the scope's current one (lifecycle hooks). */
  constructor(act: TurnScope, m: Envelope, host: TurnHost, turnId?: string) {
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
  publish(topic: string, payload: unknown, options?: ContextPublishOptions): void {
    this.#act.stagePublish(topic, payload, options?.durable === true);
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
  schedule(
    when: number | Date | string,
    handler: string,
    payload?: unknown,
    options: { name?: string } = {},
  ): void {
    if (!(handler in this.#act.def.handlers)) {
      throw new TypeError(`ctx.schedule(): actor type "${this.type}" has no handler "${handler}"`);
    }
    const now = this.#host.clock.now();
    let due: number;
    let cron: string | undefined;
    if (typeof when === "number") {
      if (!Number.isFinite(when) || when < 0) {
        throw new RangeError(`ctx.schedule() needs a delay ≥ 0 ms, got ${when}`);
      }
      due = now + when;
    } else if (when instanceof Date) {
      due = when.getTime();
      if (Number.isNaN(due)) throw new RangeError("ctx.schedule() got an invalid Date");
    } else if (typeof when === "string") {
      cron = when;
      due = nextCronRun(when, now); // throws a TypeError for a bad expression
    } else {
      throw new TypeError("ctx.schedule() needs a delay in ms, a Date or a cron expression");
    }
    const name = options.name;
    if (name !== undefined && (typeof name !== "string" || name === "" || name.length > 256)) {
      throw new TypeError("ctx.schedule(): a reminder's name is a string of 1 to 256 characters");
    }
    this.#act.schedule({
      id: name === undefined ? crypto.randomUUID() : namedReminderId(this.#act.key, name),
      actor: this.#act.key,
      handler,
      data: this.#host.storage.encode(payload),
      due,
      ...(cron !== undefined ? { cron } : {}),
      ...(name !== undefined ? { name } : {}),
      ...traceField(),
      // It runs with the identity that scheduled it (as verified now), never with more.
      ...(this.caller
        ? { caller: this.#host.storage.encode({ ...this.caller, roles: [...this.caller.roles] }) }
        : {}),
    });
  }
  cancel(name: string): void {
    if (typeof name !== "string" || name === "") {
      throw new TypeError("ctx.cancel() needs the name of a reminder");
    }
    this.#act.cancel(namedReminderId(this.#act.key, name));
  }
}
