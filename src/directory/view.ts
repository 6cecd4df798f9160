/**
 * `system.directory`: who is in the cluster (membership) and what runs where (the activations
 * view), as one read-only view for users.
 *
 * @module
 */

import { createEventQueue } from "../util/queue.ts";
import type { DirectoryWatch } from "./membership.ts";
import type { DirectoryEvent, NodeInfo } from "./types.ts";

/** Who is in the cluster and what runs where. */
export interface Directory {
  /** Live nodes. */
  nodes(): NodeInfo[];
  /** The node hosting an actor now, or undefined (`def`: its type, from `defineActor`). */
  locate(def: { readonly name: string }, id: string): Promise<string | undefined>;
  /** Node joins/leaves and activations. Break out of the loop to stop. */
  watch(): AsyncIterable<DirectoryEvent>;
}

/** What the directory view reads. */
export interface DirectorySources {
  /** The live nodes (membership). */
  nodes(): NodeInfo[];
  /** Where actor `type/id` runs now (the message path asks the owner or a host). */
  locate(type: string, id: string): Promise<string | undefined>;
  /** Membership changes, and activation changes, each as its own watch. */
  watches(): readonly DirectoryWatch[];
}

/** The directory view over its sources: `watch()` merges their watches into one stream. */
export function directoryView(sources: DirectorySources): Directory {
  return {
    nodes: () => sources.nodes(),
    locate: (def, id) => sources.locate(def.name, id),
    watch(): AsyncIterable<DirectoryEvent> {
      const queue = createEventQueue<DirectoryEvent>();
      const watches = sources.watches();
      let ended = 0;
      for (const source of watches) {
        void (async () => {
          for await (const e of source) queue.push(e);
          if (++ended === watches.length) queue.stop();
        })();
      }
      queue.onStop(() => watches.forEach((w) => w.stop()));
      return queue;
    },
  };
}
