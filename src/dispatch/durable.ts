/**
 * Durable subscriptions: `subscribe(topic, handler, { durable: name })` is a named consumer of
 * the mesh's durable topics (`MeshConnection.durableTopics()`), shared by every subscriber of
 * that name and topic pattern on any node, each message to one of them.
 *
 * The policy is the node's, not the store's: a handler that throws gets its message again
 * after a backoff (`nak` with a delay), `maxDeliver` times in all; then the message is stored
 * on `dead.<topic>` (with why, in headers) and dropped from the consumer. A message delivered
 * more than `maxDeliver` times (the node handling its last attempt stopped) goes to the dead
 * letters without running the handler again. While a handler runs, the node tells the store
 * every `ackWait / 3` that it is still working, so a slow handler is not raced by a
 * redelivery.
 *
 * @module
 */

import type { Logger } from "../actor/envelope.ts";
import { checkPayloadSize, codecFor } from "../codec/mod.ts";
import { hash53 } from "../directory/placement.ts";
import { BadPayloadError, ClosedError } from "../errors.ts";
import {
  type DurableConsumption,
  type DurableMessage,
  type DurableReceipt,
  type DurableStart,
  type DurableTopics,
  MeshError,
  type MeshHeaders,
} from "../mesh/types.ts";
import { H } from "../mesh/wire.ts";
import { delay } from "../util/async.ts";
import type { Clock, TimerId } from "../util/clock.ts";
import type { Subjects } from "./subjects.ts";

/** A live topic subscription. */
export interface TopicSubscription {
  /** The topic pattern. */
  readonly topic: string;
  /**
   * Settles once the subscription is in place: the token (if any) was allowed, the mesh knows
   * of it (and a durable subscription's consumer exists). Rejects when it was refused; the
   * subscription then delivers nothing.
   */
  readonly ready: Promise<void>;
  /** Stops delivery. Idempotent. */
  unsubscribe(): void;
  /** Same as `unsubscribe()`, for `using`. */
  [Symbol.dispose](): void;
}

/**
 * Why a message is on a dead-letter topic (`dead.<topic>`): `delivery.deadLetter`.
 *
 * @example
 * ```ts
 * import { createSystem } from "@troupe/troupe";
 * const system = await createSystem();
 * system.subscribe("dead.>", (payload, topic, delivery) => {
 *   const why = delivery!.deadLetter!;
 *   console.log(`${why.topic}: gave up after ${why.attempts} tries (${why.error})`);
 * }, { durable: "ops" });
 * await system.close();
 * ```
 */
export interface DeadLetterInfo {
  /** The topic it was published to. */
  readonly topic: string;
  /** The durable subscription that gave up on it. */
  readonly durable: string;
  /** How many times it was delivered. */
  readonly attempts: number;
  /** The last error (its message), or why it was not handled. */
  readonly error: string;
}

/**
 * What a durable subscription's handler learns about the message (third argument).
 *
 * @example
 * ```ts
 * import { createSystem, type Delivery } from "@troupe/troupe";
 * const system = await createSystem();
 * const done = new Set<string>();
 * system.subscribe("orders.*", (order, _topic, delivery?: Delivery) => {
 *   if (done.has(delivery!.id!)) return; // a repeat: at least once means maybe twice
 *   done.add(delivery!.id!);
 *   console.log(order, "attempt", delivery!.attempt, "stored", delivery!.publishedAt);
 * }, { durable: "billing" });
 * await system.close();
 * ```
 */
export interface Delivery {
  /** The message's id: the `id` given to `publish`, else a random one. */
  readonly id: string | undefined;
  /** Which delivery this is: 1 the first time, 2 after one failure, … */
  readonly attempt: number;
  /** The message's position in the store (increasing in store order). */
  readonly seq: number;
  /** When it was stored. */
  readonly publishedAt: Date;
  /** Set on messages of a dead-letter topic: why they are there. */
  readonly deadLetter?: DeadLetterInfo;
}

/**
 * A topic handler: `payload`, the topic it was published to, and, for a durable
 * subscription, its {@link Delivery} (`undefined` for a plain one). A durable handler's
 * message is acknowledged when it returns (or its promise resolves), and delivered again when
 * it throws.
 *
 * @example
 * ```ts
 * import type { TopicHandler } from "@troupe/troupe";
 * const bill: TopicHandler = async (order, topic, delivery) => {
 *   if (delivery && delivery.attempt > 1) console.log(`retrying ${topic}`);
 *   await Promise.resolve(order); // throw to get it again later
 * };
 * ```
 */
export type TopicHandler = (
  payload: unknown,
  topic: string,
  delivery: Delivery | undefined,
) => void | Promise<void>;

/**
 * Options of a durable subscription (see `System.subscribe`).
 *
 * @example
 * ```ts
 * import type { DurableSubscribeOptions } from "@troupe/troupe";
 * const options: DurableSubscribeOptions = {
 *   durable: "billing",
 *   from: "all",
 *   maxDeliver: 5,
 *   backoff: [1_000, 10_000, 60_000],
 *   ackWait: 30_000,
 *   concurrency: 4,
 * };
 * ```
 */
export interface DurableSubscribeOptions {
  /**
   * The consumer's name: subscribers with the same name and topic pattern, on any node, share
   * one consumer (each message to one of them); messages wait for it while none runs.
   * `[A-Za-z0-9_-]`, at most 48 characters.
   */
  durable: string;
  /**
   * Where the consumer starts when this subscription creates it (one that exists keeps its
   * place): every stored message (`"all"`), those stored from now on (`"new"`), or those
   * stored at or after a time. @default {"new"}
   */
  from?: DurableStart;
  /**
   * Deliveries of a message before it goes to `dead.<topic>`: the first one and
   * `maxDeliver - 1` redeliveries while the handler throws. @default {5}
   */
  maxDeliver?: number;
  /**
   * Delays before redeliveries after a failure, ms: the n-th entry after the n-th failure, the
   * last one repeated. @default {[1000, 5000, 30000]}
   */
  backoff?: readonly number[];
  /**
   * Ms a delivered message may go without an answer before the store hands it to another
   * subscriber (a node that died holding it). A running handler keeps its message (the node
   * says it is still working every `ackWait / 3`). @default {30000}
   */
  ackWait?: number;
  /** Messages this subscriber handles at once (its handler runs that many times in parallel). @default {1} */
  concurrency?: number;
}

/** What a durable subscription needs from its node. */
export interface DurableDeps {
  readonly subjects: Subjects;
  /** The node's clock: heartbeats (`working()`) and retry waits. */
  readonly clock: Clock;
  readonly log: Logger;
  readonly maxPayload: number;
  /** The mesh's durable topics (throws `unavailable` when it has none). */
  store(): DurableTopics;
  /** Stores an encoded message (dead letters). */
  publishEncoded(
    topic: string,
    data: Uint8Array,
    contentType: string,
    id: string,
    headers?: MeshHeaders,
  ): Promise<DurableReceipt>;
  /** The subscription ended. */
  ended(sub: DurableSubscription): void;
}

const DURABLE_NAME = /^[A-Za-z0-9_-]{1,48}$/;
const DEFAULT_BACKOFF: readonly number[] = [1_000, 5_000, 30_000];
/** Dead-letter headers. */
const DL = {
  topic: "tr-dead-topic",
  durable: "tr-dead-durable",
  attempts: "tr-dead-attempts",
  error: "tr-dead-error",
} as const;

/** The store's consumer name of durable `name` on `topic` (a pattern may not be a name). */
export function consumerName(name: string, topic: string): string {
  return `${name}_${hash53(topic).toString(36)}`;
}

/** Checks the options; returns them with their defaults. */
function resolveOptions(o: DurableSubscribeOptions): Required<DurableSubscribeOptions> {
  if (typeof o.durable !== "string" || !DURABLE_NAME.test(o.durable)) {
    throw new TypeError(
      `subscribe(): durable name "${
        String(o.durable).slice(0, 60)
      }" must be 1 to 48 of [A-Za-z0-9_-]`,
    );
  }
  const from = o.from ?? "new";
  if (from !== "all" && from !== "new" && !(from instanceof Date && !isNaN(from.getTime()))) {
    throw new TypeError(`subscribe(): from must be "all", "new" or a valid Date`);
  }
  const maxDeliver = o.maxDeliver ?? 5;
  if (!(Number.isInteger(maxDeliver) && maxDeliver >= 1)) {
    throw new RangeError(`subscribe(): maxDeliver must be a positive integer, got ${maxDeliver}`);
  }
  const backoff = o.backoff ?? DEFAULT_BACKOFF;
  if (!Array.isArray(backoff) || backoff.length === 0 || !backoff.every((b) => b >= 0)) {
    throw new RangeError("subscribe(): backoff must list at least one delay ≥ 0 ms");
  }
  const ackWait = o.ackWait ?? 30_000;
  if (!(ackWait >= 100)) throw new RangeError(`subscribe(): ackWait must be ≥ 100 ms`);
  const concurrency = o.concurrency ?? 1;
  if (!(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 1024)) {
    throw new RangeError(`subscribe(): concurrency must be an integer from 1 to 1024`);
  }
  return { durable: o.durable, from, maxDeliver, backoff, ackWait, concurrency };
}

/** A durable subscription: see the module doc. */
export class DurableSubscription implements TopicSubscription {
  readonly topic: string;
  readonly ready: Promise<void>;
  readonly #deps: DurableDeps;
  readonly #handler: TopicHandler;
  readonly #o: Required<DurableSubscribeOptions>;
  readonly #strip: number;
  #consumption: DurableConsumption | undefined;
  #stopped = false;
  #stopping: Promise<void> | undefined;
  readonly #running = new Set<DurableMessage>();
  #idle: (() => void) | undefined;
  #beat: TimerId | undefined;
  readonly #wake = new AbortController();

  constructor(
    deps: DurableDeps,
    topic: string,
    handler: TopicHandler,
    options: DurableSubscribeOptions,
    gate: Promise<void> | undefined,
  ) {
    this.#o = resolveOptions(options);
    this.#deps = deps;
    this.topic = topic;
    this.#handler = handler;
    this.#strip = deps.subjects.durable("").length;
    this.ready = this.#start(gate);
    this.ready.catch(() => {}); // the caller may not look; the failure is logged
  }

  async #start(gate: Promise<void> | undefined): Promise<void> {
    const d = this.#deps;
    const o = this.#o;
    if (gate) {
      try {
        await gate;
      } catch (err) {
        this.#stopped = true;
        this.#end();
        throw err; // refused: the system says so
      }
    }
    try {
      for (let attempt = 0;; attempt++) {
        if (this.#stopped) return;
        try {
          const consumer = await d.store().consumer({
            name: consumerName(o.durable, this.topic),
            filter: d.subjects.durable(this.topic),
            from: o.from,
            ackWait: o.ackWait,
            description: `Troupe durable subscription "${o.durable}" on "${this.topic}"`,
          });
          if (this.#stopped) return;
          this.#consumption = consumer.consume((m) => this.#take(m), {
            maxInFlight: o.concurrency,
          });
          this.#consumption.closed.then(() => {
            if (!this.#stopped) this.#end(); // the connection closed
          });
          return;
        } catch (err) {
          // the store is away for now (a server restarting): keep trying, say so
          if (!(err instanceof MeshError) || err.code === "closed") throw err;
          const wait = Math.min(30_000, 500 * 2 ** attempt);
          d.log.warn(`Durable subscription "${o.durable}" on "${this.topic}" waits for the store`, {
            error: err.message,
            retryIn: wait,
          });
          await delay(this.#deps.clock, wait, this.#wake.signal).catch(() => {});
        }
      }
    } catch (err) {
      this.#stopped = true;
      this.#end();
      const e = err instanceof MeshError && err.code === "closed"
        ? new ClosedError("The node is closed", { cause: err })
        : err;
      if (!(e instanceof ClosedError)) {
        d.log.warn(`Durable subscription "${o.durable}" on "${this.topic}" refused`, {
          error: String(e),
        });
      }
      throw e;
    }
  }

  #take(msg: DurableMessage): void {
    if (this.#stopped) return msg.nak(); // another subscriber may take it now
    this.#running.add(msg);
    this.#beat ??= this.#deps.clock.setInterval(() => {
      for (const m of this.#running) m.working();
    }, this.#o.ackWait / 3);
    this.#handle(msg).catch((err) =>
      this.#deps.log.error("Durable subscription failed to settle a message", {
        error: String(err),
      })
    ).finally(() => {
      this.#running.delete(msg);
      if (this.#running.size === 0) {
        this.#deps.clock.clearInterval(this.#beat);
        this.#beat = undefined;
        this.#idle?.();
      }
    });
  }

  async #handle(msg: DurableMessage): Promise<void> {
    const o = this.#o;
    const topic = msg.subject.slice(this.#strip);
    let payload: unknown;
    try {
      const codec = codecFor(msg.headers[H.contentType] ?? "");
      if (!codec) throw new BadPayloadError("Unknown content type");
      checkPayloadSize(msg.data.byteLength, this.#deps.maxPayload, "Stored message");
      payload = codec.decode(msg.data);
    } catch (err) {
      return await this.#dead(msg, topic, `Cannot decode it: ${errorText(err)}`);
    }
    if (msg.deliveries > o.maxDeliver) {
      return await this.#dead(
        msg,
        topic,
        `Delivered ${msg.deliveries} times (the last attempt did not finish)`,
      );
    }
    const delivery: Delivery = {
      id: msg.id,
      attempt: msg.deliveries,
      seq: msg.seq,
      publishedAt: new Date(msg.storedAt),
      ...deadLetterOf(msg.headers),
    };
    try {
      await this.#handler(payload, topic, delivery);
    } catch (err) {
      if (msg.deliveries >= o.maxDeliver) return await this.#dead(msg, topic, errorText(err));
      const wait = o.backoff[Math.min(msg.deliveries, o.backoff.length) - 1]!;
      this.#deps.log.warn(
        `Durable subscriber "${o.durable}" of "${topic}" failed (attempt ${msg.deliveries} of ${o.maxDeliver}); retried in ${wait} ms`,
        { error: errorText(err) },
      );
      return msg.nak(wait);
    }
    msg.ack();
  }

  /** Stores the message on `dead.<topic>`, then drops it from the consumer. */
  async #dead(msg: DurableMessage, topic: string, error: string): Promise<void> {
    const o = this.#o;
    const d = this.#deps;
    const headers: MeshHeaders = {
      [DL.topic]: topic,
      [DL.durable]: o.durable,
      [DL.attempts]: String(msg.deliveries),
      [DL.error]: error.replace(/[\r\n]+/g, " ").slice(0, 300),
    };
    const deadTopic = `dead.${topic}`;
    try {
      // the id makes a resend (this node died before `term`) a duplicate, not a second letter
      await d.publishEncoded(
        deadTopic,
        msg.data,
        msg.headers[H.contentType] ?? "application/octet-stream",
        `dead.${consumerName(o.durable, this.topic)}.${msg.seq}`,
        headers,
      );
    } catch (err) {
      d.log.error(`Cannot move a message of "${topic}" to "${deadTopic}"; it comes back later`, {
        error: errorText(err),
      });
      return msg.nak(o.backoff[o.backoff.length - 1]);
    }
    d.log.error(
      `Durable subscriber "${o.durable}" gave up on a message of "${topic}" after ${msg.deliveries} deliveries: moved to "${deadTopic}"`,
      { error },
    );
    msg.term();
  }

  unsubscribe(): void {
    this.stop().catch(() => {});
  }

  [Symbol.dispose](): void {
    this.unsubscribe();
  }

  /** No new messages; resolves once the handlers running now have settled theirs. */
  stop(): Promise<void> {
    return this.#stopping ??= this.#stop();
  }

  async #stop(): Promise<void> {
    this.#stopped = true;
    this.#wake.abort();
    await this.ready.catch(() => {});
    await this.#consumption?.stop();
    if (this.#running.size > 0) await new Promise<void>((r) => this.#idle = r);
    this.#end();
  }

  /** Stops telling the store that the running handlers are working (the node is closing). */
  abandon(): void {
    this.#deps.clock.clearInterval(this.#beat);
    this.#beat = undefined;
    this.#end();
  }

  #end(): void {
    this.#deps.ended(this);
  }
}

/** The dead-letter part of a {@link Delivery}, from a message's headers. */
function deadLetterOf(h: MeshHeaders): { deadLetter?: DeadLetterInfo } {
  const topic = h[DL.topic];
  if (topic === undefined) return {};
  return {
    deadLetter: {
      topic,
      durable: h[DL.durable] ?? "",
      attempts: Number(h[DL.attempts] ?? 0),
      error: h[DL.error] ?? "",
    },
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
