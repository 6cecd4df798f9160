/**
 * The mesh subjects of the message path, addressed to nodes, never to actors:
 * `<prefix>.n.<node>.<type>` a node's inbox for one hosted type (one subscription per node per
 * type, so NATS interest grows with nodes × types, never with actors, and permissions can
 * still be written per type), `<prefix>.w.<type>` a worker type's queue group,
 * `<prefix>.t.<topic>` pub/sub, `<prefix>.d.<topic>` durable topics (stored by the mesh); under `<prefix>.c.>` node-to-node control (nodes only):
 * `<prefix>.c.dir.<node>` a node's directory queries, `<prefix>.c.ev.<node>` its directory events.
 * Names are encoded into subject-safe tokens.
 *
 * @module
 */

import { encodeToken, isValidSubject } from "../mesh/subject.ts";

/**
 * Inbox prefixes a node answers to by default: `_INBOX.…`, per-user `_INBOX_<user>.…`, and
 * `_R_.…`, the reply subjects nats-server gives requests that cross from a client's account into
 * the nodes' (it maps the one answer back to the requester; see `natsAuthConfig()`).
 */
export const DEFAULT_REPLY_PREFIXES: readonly string[] = ["_INBOX", "_R_"];

/**
 * Whether a node may publish to `subject` on a caller's behalf (a reply, stream items, stream
 * credit): only an inbox whose first token starts with one of `prefixes`, never a JetStream or
 * KV API subject (`$…`) nor a Troupe subject. A caller picks these subjects, so without this
 * check it could make a node write into the directory's buckets or another actor's mailbox.
 */
export function isReplySubject(subject: string, prefixes: readonly string[]): boolean {
  if (subject.startsWith("$") || !isValidSubject(subject)) return false;
  const first = subject.slice(0, subject.indexOf(".") >>> 0);
  return prefixes.some((p) => first.startsWith(p));
}

/** Subject names under one prefix. */
export interface Subjects {
  /** Node `node`'s inbox for requests to actors of `type`. */
  hosted(node: string, type: string): string;
  /** Everything node `node` serves for its hosted types (`<prefix>.n.<node>.*`). */
  hostedAll(node: string): string;
  /** The start every `hosted` subject of `node` shares (its type token follows). */
  hostedPrefix(node: string): string;
  /** Node `node`'s directory queries (the actors active on it). */
  directory(node: string): string;
  /** A stateless worker type's queue subject. */
  worker(type: string): string;
  /** The queue group of a worker type. */
  workerGroup(type: string): string;
  /** A pub/sub topic (or pattern). */
  topic(topic: string): string;
  /** A durable topic (or pattern): stored by the mesh's durable topics. */
  durable(topic: string): string;
  /** Directory events published by `node` (`*`: every node's). */
  events(node: string): string;
}

/** The subjects under `prefix`. */
export function subjects(prefix: string): Subjects {
  // Every message names one of these: built once per node and type (a bounded set: the
  // members' inboxes), not per message.
  const hosted = new Map<string, string>();
  return {
    hosted: (node, type) => {
      const key = `${node} ${type}`;
      let s = hosted.get(key);
      if (s === undefined) {
        s = `${prefix}.n.${encodeToken(node)}.${encodeToken(type)}`;
        if (hosted.size >= 4096) hosted.clear();
        hosted.set(key, s);
      }
      return s;
    },
    hostedAll: (node) => `${prefix}.n.${encodeToken(node)}.*`,
    hostedPrefix: (node) => `${prefix}.n.${encodeToken(node)}.`,
    directory: (node) => `${prefix}.c.dir.${encodeToken(node)}`,
    worker: (type) => `${prefix}.w.${encodeToken(type)}`,
    workerGroup: (type) => `w-${encodeToken(type)}`,
    topic: (topic) => `${prefix}.t.${topic}`,
    durable: (topic) => `${prefix}.d.${topic}`,
    events: (node) => `${prefix}.c.ev.${node === "*" ? "*" : encodeToken(node)}`,
  };
}
