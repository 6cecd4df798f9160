/**
 * Pub/sub over the mesh: topics map to subjects under the prefix, groups to queue groups.
 * Payloads go through the codec named by their content type and are bounded like requests.
 *
 * @module
 */

import type { Logger } from "../actor/envelope.ts";
import { checkPayloadSize, codecFor } from "../codec/mod.ts";
import type { Codec } from "../codec/types.ts";
import { BadPayloadError, ClosedError } from "../errors.ts";
import { isValidSubject } from "../mesh/subject.ts";
import { type MeshConnection, MeshError } from "../mesh/types.ts";
import { H } from "../mesh/wire.ts";
import type { Subjects } from "./subjects.ts";

/** What pub/sub needs from its node. */
export interface PubSubDeps {
  readonly conn: MeshConnection;
  readonly subjects: Subjects;
  readonly log: Logger;
  readonly wireCodec: Codec;
  readonly maxPayload: number;
}

/** Longest topic, in characters (topics become subjects; nats-server bounds those). */
export const MAX_TOPIC_LENGTH = 1024;

/** A live topic subscription. */
export interface TopicSubscription {
  /** The topic pattern. */
  readonly topic: string;
  /** Stops delivery. Idempotent. */
  unsubscribe(): void;
  /** Same as `unsubscribe()`, for `using`. */
  [Symbol.dispose](): void;
}

/** Publishes `payload` to `topic`. */
export function publish(d: PubSubDeps, topic: string, payload: unknown): Promise<void> {
  if (topic.length > MAX_TOPIC_LENGTH || !isValidSubject(topic)) {
    return Promise.reject(
      new TypeError(`Topic "${topic.slice(0, 80)}" is not valid (dot-separated tokens)`),
    );
  }
  try {
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

/** Subscribes `handler` to a topic pattern (`*` one token, `>` the rest). */
export function subscribe(
  d: PubSubDeps,
  topic: string,
  handler: (payload: unknown, topic: string) => void | Promise<void>,
  group: string | undefined,
): TopicSubscription {
  if (topic.length > MAX_TOPIC_LENGTH || !isValidSubject(topic, true)) {
    throw new TypeError(`Topic pattern "${topic.slice(0, 80)}" is not valid`);
  }
  const strip = d.subjects.topic("").length;
  const failed = (err: unknown) =>
    d.log.error(`Subscriber of "${topic}" failed`, { error: String(err) });
  const sub = d.conn.subscribe(d.subjects.topic(topic), (msg) => {
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
      const r = handler(payload, msg.subject.slice(strip));
      if (r && typeof (r as Promise<void>).then === "function") (r as Promise<void>).catch(failed);
    } catch (err) {
      failed(err);
    }
  }, group !== undefined ? { queue: group } : {});
  return {
    topic,
    unsubscribe: () => sub.unsubscribe(),
    [Symbol.dispose]: () => sub.unsubscribe(),
  };
}
