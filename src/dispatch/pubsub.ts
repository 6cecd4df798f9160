/**
 * Pub/sub over the mesh. Plain topics map to subjects `<prefix>.t.<topic>`, groups to queue
 * groups, at most once. Durable topics (`durable.ts`) are stored by the mesh's durable
 * capability under `<prefix>.d.<topic>`; a plain subscriber gets those too, live, at most
 * once. Payloads go through the codec named by their content type and are bounded like
 * requests.
 *
 * @module
 */

import type { Logger } from "../actor/envelope.ts";
import { checkPayloadSize, codecFor } from "../codec/mod.ts";
import type { Codec } from "../codec/types.ts";
import { BadPayloadError, ClosedError, UnavailableError } from "../errors.ts";
import { isValidSubject } from "../mesh/subject.ts";
import {
  type DurableReceipt,
  type DurableTopics,
  type MeshConnection,
  MeshError,
  type MeshHeaders,
  type MeshSubscription,
} from "../mesh/types.ts";
import { H } from "../mesh/wire.ts";
import {
  type DurableSubscribeOptions,
  DurableSubscription,
  type TopicHandler,
  type TopicSubscription,
} from "./durable.ts";
import type { Clock } from "../util/clock.ts";
import type { Subjects } from "./subjects.ts";

export type { DurableSubscribeOptions, TopicHandler, TopicSubscription } from "./durable.ts";
export type { DeadLetterInfo, Delivery } from "./durable.ts";

/** What pub/sub needs from its node. */
export interface PubSubDeps {
  readonly conn: MeshConnection;
  readonly subjects: Subjects;
  readonly log: Logger;
  readonly wireCodec: Codec;
  readonly maxPayload: number;
  /** The node's clock (drain bounds; durable subscriptions' heartbeats and retries). */
  readonly clock: Clock;
}

/** Longest topic, in characters (topics become subjects; nats-server bounds those). */
export const MAX_TOPIC_LENGTH = 1024;
/** Longest dedup id of a durable publish. */
export const MAX_MESSAGE_ID = 128;

/** Options of {@link PubSub.subscribe}. */
export interface TopicOptions extends Partial<DurableSubscribeOptions> {
  /** Queue group of a plain subscription: each message to one member. */
  group?: string;
}

/** Throws a `TypeError` for a bad topic (a pattern when `wildcards`). */
export function checkTopic(topic: string, wildcards: boolean): void {
  if (
    typeof topic !== "string" || topic.length > MAX_TOPIC_LENGTH ||
    !isValidSubject(topic, wildcards)
  ) {
    throw new TypeError(
      wildcards
        ? `Topic pattern "${String(topic).slice(0, 80)}" is not valid`
        : `Topic "${String(topic).slice(0, 80)}" is not valid (dot-separated tokens)`,
    );
  }
}

/**
 * The pub/sub of one node: plain and durable publish and subscribe, and the durable
 * subscriptions' lifecycle (they stop before the node drains).
 */
export class PubSub {
  readonly #d: PubSubDeps;
  readonly #durable = new Set<DurableSubscription>();

  constructor(deps: PubSubDeps) {
    this.#d = deps;
  }

  /** Publishes `payload` to `topic`, at most once. */
  publish(topic: string, payload: unknown): Promise<void> {
    const d = this.#d;
    try {
      checkTopic(topic, false);
      const data = d.wireCodec.encode(payload);
      checkPayloadSize(data.byteLength, d.maxPayload, `Publish to "${topic}"`);
      d.conn.publish(d.subjects.topic(topic), data, {
        headers: { [H.contentType]: d.wireCodec.contentType },
      });
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err instanceof MeshError ? new ClosedError(err.message) : err);
    }
  }

  /**
   * Stores `payload` on durable topic `topic`; resolves once stored. `id` deduplicates within
   * the store's window (default: a random id, so that the mesh can resend it safely).
   */
  publishDurable(topic: string, payload: unknown, id?: string): Promise<DurableReceipt> {
    const d = this.#d;
    let data: Uint8Array;
    try {
      data = d.wireCodec.encode(payload);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.publishEncoded(topic, data, d.wireCodec.contentType, id ?? crypto.randomUUID());
  }

  /**
   * Stores an encoded payload on durable topic `topic`; resolves once stored. For the
   * transactional outbox, which keeps `data`, `contentType` and `id` with a turn's events and
   * forwards them after the commit: `id` makes a resend after a crash harmless within the
   * store's duplicate window (NATS: JetStream's `Nats-Msg-Id`, 2 minutes by default).
   */
  async publishEncoded(
    topic: string,
    data: Uint8Array,
    contentType: string,
    id: string,
    headers?: MeshHeaders,
  ): Promise<DurableReceipt> {
    const d = this.#d;
    checkTopic(topic, false);
    if (typeof id !== "string" || id === "" || id.length > MAX_MESSAGE_ID) {
      throw new TypeError(`A message id has 1 to ${MAX_MESSAGE_ID} characters`);
    }
    if (!codecFor(contentType)) {
      throw new BadPayloadError(`No codec for content type "${contentType}"`);
    }
    checkPayloadSize(data.byteLength, d.maxPayload, `Durable publish to "${topic}"`);
    const store = durableTopicsOf(d.conn);
    try {
      return await store.publish(d.subjects.durable(topic), data, {
        headers: { ...headers, [H.contentType]: contentType },
        id,
      });
    } catch (err) {
      throw storeError(err, `Durable publish to "${topic}"`);
    }
  }

  /**
   * Subscribes `handler` to a topic pattern (`*` one token, `>` the rest). With `durable`, a
   * named consumer of the durable topics ({@link DurableSubscription}). Nothing is delivered
   * before `gate` resolves (a token's check); its rejection ends the subscription.
   */
  subscribe(
    topic: string,
    handler: TopicHandler,
    options: TopicOptions = {},
    gate?: Promise<void>,
  ): TopicSubscription {
    checkTopic(topic, true);
    if (options.durable === undefined) return this.#plain(topic, handler, options.group, gate);
    if (options.group !== undefined) {
      throw new TypeError(
        "subscribe(): `group` and `durable` do not go together (a durable name is already shared by its subscribers)",
      );
    }
    const d = this.#d;
    const sub = new DurableSubscription(
      {
        ...d,
        store: () => durableTopicsOf(d.conn),
        publishEncoded: (t, data, ct, id, h) => this.publishEncoded(t, data, ct, id, h),
        ended: (s) => this.#durable.delete(s),
      },
      topic,
      handler,
      options as DurableSubscribeOptions,
      gate,
    );
    this.#durable.add(sub);
    return sub;
  }

  #plain(
    topic: string,
    handler: TopicHandler,
    group: string | undefined,
    gate: Promise<void> | undefined,
  ): TopicSubscription {
    const d = this.#d;
    const strip = d.subjects.topic("").length; // `<prefix>.t.` and `<prefix>.d.` alike
    const failed = (err: unknown) =>
      d.log.error(`Subscriber of "${topic}" failed`, { error: String(err) });
    const onMessage = (msg: { subject: string; headers: MeshHeaders; data: Uint8Array }) => {
      let payload: unknown;
      try {
        const codec = codecFor(msg.headers[H.contentType] ?? d.wireCodec.contentType);
        if (!codec) throw new BadPayloadError("Unknown content type");
        checkPayloadSize(msg.data.byteLength, d.maxPayload, "Published message");
        payload = codec.decode(msg.data);
      } catch (err) {
        return d.log.warn("Dropped a malformed published message", {
          subject: msg.subject,
          error: String(err),
        });
      }
      try {
        const r = handler(payload, msg.subject.slice(strip), undefined);
        if (r && typeof (r as Promise<void>).then === "function") {
          (r as Promise<void>).catch(failed);
        }
      } catch (err) {
        failed(err);
      }
    };
    const opts = group !== undefined ? { queue: group } : {};
    let subs: MeshSubscription[] = [];
    let stopped = false;
    const start = () => {
      if (stopped) return;
      subs = [d.conn.subscribe(d.subjects.topic(topic), onMessage, opts)];
      // durable messages reach plain subscribers too (live, at most once)
      if (d.conn.durableTopics) {
        subs.push(d.conn.subscribe(d.subjects.durable(topic), onMessage, opts));
      }
    };
    let ready: Promise<void>;
    if (gate === undefined) {
      start();
      ready = d.conn.flush();
    } else {
      ready = gate.then(() => {
        start();
        return d.conn.flush();
      });
    }
    ready.catch(() => {}); // the caller may not look
    const unsubscribe = () => {
      stopped = true;
      for (const s of subs) s.unsubscribe();
      subs = [];
    };
    return { topic, ready, unsubscribe, [Symbol.dispose]: unsubscribe };
  }

  /**
   * Stops every durable subscription (no new messages) and waits, at most `boundMs`, for the
   * handlers still running to finish and settle their messages. Unsettled ones come back
   * after their `ackWait` (to another node).
   */
  async drain(boundMs: number): Promise<void> {
    const subs = [...this.#durable];
    if (subs.length === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(subs.map((s) => s.stop())),
      new Promise<void>((r) => timer = this.#d.clock.setTimeout(r, boundMs)),
    ]);
    this.#d.clock.clearTimeout(timer);
    for (const s of subs) s.abandon();
  }
}

/** The mesh's durable topics, or an `unavailable` error saying it has none. */
function durableTopicsOf(conn: MeshConnection): DurableTopics {
  if (typeof conn.durableTopics !== "function") {
    throw new UnavailableError(
      "This mesh has no durable topics (its connections lack durableTopics()): use the in-process or NATS mesh",
    );
  }
  return conn.durableTopics();
}

/** A mesh error of the durable store as the caller's error. */
export function storeError(err: unknown, what: string): unknown {
  if (!(err instanceof MeshError)) return err;
  switch (err.code) {
    case "closed":
      return new ClosedError(`${what}: the node is closed`, { cause: err });
    case "max_payload":
      return new BadPayloadError(`${what}: ${err.message}`, { cause: err });
    case "timeout":
      return new UnavailableError(
        `${what}: the store did not answer in time (the message may or may not be stored; ` +
          `publish it again with the same id)`,
        { cause: err },
      );
    default:
      return new UnavailableError(`${what}: ${err.message}`, { cause: err });
  }
}
