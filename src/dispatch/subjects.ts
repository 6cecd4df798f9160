/**
 * The mesh subjects of the message path: `<prefix>.a.<type>.<id>` an active actor's mailbox,
 * `<prefix>.n.<node>` a node's inbox, `<prefix>.w.<type>` a worker type's queue group,
 * `<prefix>.t.<topic>` pub/sub. Names are encoded into subject-safe tokens.
 *
 * @module
 */

import { encodeToken, isValidSubject } from "../mesh/subject.ts";

/** Inbox prefixes a node answers to by default: `_INBOX.…` and per-user `_INBOX_<user>.…`. */
export const DEFAULT_REPLY_PREFIXES: readonly string[] = ["_INBOX"];

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
  /** An active actor's subject. */
  actor(type: string, id: string): string;
  /** A node's inbox. */
  node(node: string): string;
  /** A stateless worker type's queue subject. */
  worker(type: string): string;
  /** The queue group of a worker type. */
  workerGroup(type: string): string;
  /** A pub/sub topic (or pattern). */
  topic(topic: string): string;
}

/** The subjects under `prefix`. */
export function subjects(prefix: string): Subjects {
  return {
    actor: (type, id) => `${prefix}.a.${encodeToken(type)}.${encodeToken(id)}`,
    node: (node) => `${prefix}.n.${encodeToken(node)}`,
    worker: (type) => `${prefix}.w.${encodeToken(type)}`,
    workerGroup: (type) => `w-${encodeToken(type)}`,
    topic: (topic) => `${prefix}.t.${topic}`,
  };
}
