/**
 * Journal metrics: `troupe.journal.commit.duration` and `troupe.journal.appends`, measured
 * around the journal's `append` as the message path calls it, so that any journal (libSQL,
 * memory, a third party's) is measured alike and the journal itself stays untouched.
 *
 * @module
 */

import type { Append, Journal } from "../journal/types.ts";
import type { NodeObserver } from "./node.ts";

/**
 * `journal`, with its appends measured when metrics are on (else `journal` itself). Every
 * other member is the journal's own.
 *
 * @example
 * ```ts
 * import { memoryJournal } from "../journal/memory.ts";
 * import { NodeObserver } from "./node.ts";
 * import { measuredJournal } from "./journal.ts";
 * const observer = new NodeObserver("n1", () => []);
 * const journal = measuredJournal(memoryJournal(), observer);
 * await journal.close();
 * ```
 */
export function measuredJournal(journal: Journal, observer: NodeObserver): Journal {
  if (!observer.metrics) return journal;
  const append = async (a: Append): Promise<void> => {
    const t0 = observer.clock.monotonic();
    await journal.append(a);
    const slash = a.actor.indexOf("/");
    observer.committed(
      slash < 0 ? a.actor : a.actor.slice(0, slash),
      a.events.length,
      (observer.clock.monotonic() - t0) / 1000,
    );
  };
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(journal, {
    get(target, key) {
      if (key === "append") return append;
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      let fn = bound.get(key);
      if (fn === undefined) bound.set(key, fn = value.bind(target));
      return fn;
    },
  });
}
