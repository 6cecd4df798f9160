/**
 * The mesh subjects of the message path: `<prefix>.a.<type>.<id>` an active actor's mailbox,
 * `<prefix>.n.<node>` a node's inbox, `<prefix>.w.<type>` a worker type's queue group,
 * `<prefix>.t.<topic>` pub/sub. Names are encoded into subject-safe tokens.
 *
 * @module
 */

import { encodeToken } from "../mesh/subject.ts";

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
