/**
 * Which actors are active where, cluster-wide, for `directory.watch()`: each node answers
 * queries for the actors active on it and publishes a small event when one activates or
 * stops. Nothing of it is stored in the mesh: a watcher subscribes to the events of every node,
 * then asks each live node for its actors, page by page.
 *
 * @module
 */

import type { Codec } from "../codec/types.ts";
import { decodeToken } from "../mesh/subject.ts";
import type { MeshConnection, MeshSubscription } from "../mesh/types.ts";
import { createEventQueue } from "../util/queue.ts";
import type { DirectoryWatch, Membership } from "./membership.ts";
import type { DirectoryEvent } from "./types.ts";

/** The subjects this module uses. */
export interface ActivationSubjects {
  /** Node `node`'s queries. */
  directory(node: string): string;
  /** Events published by `node` (`"*"`: by any node). */
  events(node: string): string;
}

/** What the directory of activations needs from its node. */
export interface ActivationsDeps {
  readonly conn: MeshConnection;
  readonly membership: Membership;
  readonly subjects: ActivationSubjects;
  readonly codec: Codec;
  /** This node's active actors, as `[type, id]`. */
  active(): Iterable<readonly [string, string]>;
  /** Where `type/id` runs, as this node can tell (it hosts the type and reads its journal). */
  locate(type: string, id: string): Promise<string | undefined>;
}

/** Actors per page of a node's answer. */
const PAGE = 2_000;
/** How long a watcher waits for one page. */
const PAGE_TIMEOUT_MS = 5_000;

interface Page {
  actors: [string, string][];
  more: boolean;
}

/** The activations of a node, and the cluster-wide view of them (see the module doc). */
export class Activations {
  readonly #deps: ActivationsDeps;
  #sub: MeshSubscription | undefined;
  readonly #eventSubject: string;

  constructor(deps: ActivationsDeps) {
    this.#deps = deps;
    this.#eventSubject = deps.subjects.events(deps.membership.self.id);
  }

  /** Starts answering queries for this node's actors. */
  start(): void {
    const d = this.#deps;
    this.#sub = d.conn.subscribe(d.subjects.directory(d.membership.self.id), (msg) => {
      const reply = msg.reply;
      if (!reply) return;
      let q: { after?: unknown; locate?: unknown } | null;
      try {
        q = d.codec.decode(msg.data) as typeof q;
      } catch {
        return;
      }
      const answer = (value: unknown) => {
        try {
          d.conn.publish(reply, d.codec.encode(value));
        } catch { /* the asker is gone, or the reply subject is not ours to write */ }
      };
      const target = q?.locate;
      if (Array.isArray(target) && typeof target[0] === "string" && typeof target[1] === "string") {
        d.locate(target[0], target[1]).then(
          (node) => answer({ node: node ?? null }),
          () => answer({ node: null }),
        );
      } else answer(this.#page(typeof q?.after === "string" ? q.after : ""));
    });
  }

  /** Asks `node` (a host of `type`) where `type/id` runs. */
  async locateVia(node: string, type: string, id: string): Promise<string | undefined> {
    const d = this.#deps;
    const reply = await d.conn.request(
      d.subjects.directory(node),
      d.codec.encode({ locate: [type, id] }),
      { timeout: PAGE_TIMEOUT_MS },
    );
    const r = d.codec.decode(reply.data) as { node?: unknown } | null;
    return typeof r?.node === "string" ? r.node : undefined;
  }

  /** The actors after `after` (by `type/id`), at most {@link PAGE} of them, in key order. */
  #page(after: string): Page {
    const keys: string[] = [];
    for (const [type, id] of this.#deps.active()) {
      const key = `${type}/${id}`;
      if (key > after) keys.push(key);
    }
    keys.sort();
    const actors = keys.slice(0, PAGE).map((k) => {
      const slash = k.indexOf("/");
      return [k.slice(0, slash), k.slice(slash + 1)] as [string, string];
    });
    return { actors, more: keys.length > PAGE };
  }

  /** Tells watchers that `type/id` became active on this node. */
  activated(type: string, id: string): void {
    this.#publish(1, type, id);
  }

  /** Tells watchers that `type/id` stopped on this node. */
  deactivated(type: string, id: string): void {
    this.#publish(0, type, id);
  }

  #publish(a: 0 | 1, t: string, i: string): void {
    try {
      this.#deps.conn.publish(this.#eventSubject, this.#deps.codec.encode({ a, t, i }));
    } catch { /* closed */ }
  }

  /** Current activations as `activated` events, then every change, cluster-wide. */
  watch(): DirectoryWatch {
    const d = this.#deps;
    const queue = createEventQueue<DirectoryEvent>();
    /** `type/id` → node, as last reported. */
    const known = new Map<string, string>();
    const activated = (type: string, id: string, node: string) => {
      const key = `${type}/${id}`;
      const previous = known.get(key);
      if (previous === node) return;
      if (previous !== undefined) {
        queue.push({ type: "deactivated", actor: { type, id }, node: previous });
      }
      known.set(key, node);
      queue.push({ type: "activated", actor: { type, id }, node });
    };
    const deactivated = (type: string, id: string, node: string) => {
      const key = `${type}/${id}`;
      if (known.get(key) !== node) return;
      known.delete(key);
      queue.push({ type: "deactivated", actor: { type, id }, node });
    };
    const prefix = d.subjects.events("*").length - 1;
    const sub = d.conn.subscribe(d.subjects.events("*"), (msg) => {
      try {
        const e = d.codec.decode(msg.data) as { a?: unknown; t?: unknown; i?: unknown };
        if (typeof e.t !== "string" || typeof e.i !== "string") return;
        const node = decodeToken(msg.subject.slice(prefix));
        if (e.a === 1) activated(e.t, e.i, node);
        else deactivated(e.t, e.i, node);
      } catch { /* not an event of ours */ }
    });
    // A node that leaves takes its actors with it.
    const off = d.membership.on((e) => {
      if (e.type !== "node_left") return;
      for (const [key, node] of [...known]) {
        if (node !== e.node.id) continue;
        const slash = key.indexOf("/");
        deactivated(key.slice(0, slash), key.slice(slash + 1), node);
      }
    });
    let stopped = false;
    queue.onStop(() => {
      stopped = true;
      off();
      sub.unsubscribe();
    });
    void (async () => {
      try {
        await d.conn.flush(); // the events subscription is live before the snapshot is read
      } catch {
        return queue.stop();
      }
      for (const node of d.membership.nodes()) {
        if (node.types.length === 0) continue;
        let after = "";
        for (let more = true; more && !stopped;) {
          let page: Page;
          try {
            const reply = await d.conn.request(
              d.subjects.directory(node.id),
              d.codec.encode({ after }),
              { timeout: PAGE_TIMEOUT_MS },
            );
            page = d.codec.decode(reply.data) as Page;
          } catch {
            break; // that node is gone or not answering: its events still arrive
          }
          for (const [type, id] of page.actors) {
            if (!known.has(`${type}/${id}`)) activated(type, id, node.id);
          }
          more = page.more === true && page.actors.length > 0;
          if (more) after = `${page.actors.at(-1)![0]}/${page.actors.at(-1)![1]}`;
        }
      }
    })();
    return queue;
  }

  /** Stops answering queries. */
  close(): void {
    this.#sub?.unsubscribe();
  }
}
