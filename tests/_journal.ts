/**
 * A journal that forwards every call to another one, but for the methods a test overrides:
 * for tests that hold, trace or count one kind of call.
 *
 * @module
 */

import type { Journal } from "../src/journal/types.ts";

/** `base`, with `overrides` in place of its methods of the same name. */
export function wrapJournal(base: Journal, overrides: Partial<Journal>): Journal {
  return {
    activate: (a, c) => base.activate(a, c),
    release: (a, n, e) => base.release(a, n, e),
    owner: (a) => base.owner(a),
    append: (a) => base.append(a),
    read: (a, f, l) => base.read(a, f, l),
    reply: (a, k) => base.reply(a, k),
    pruneIdempotency: (n) => base.pruneIdempotency(n),
    shards: base.shards,
    shardOf: (a) => base.shardOf(a),
    readCommitted: (s, a, l) => base.readCommitted(s, a, l),
    dueReminders: (n, l) => base.dueReminders(n, l),
    nextReminder: () => base.nextReminder(),
    deleteReminder: (id) => base.deleteReminder(id),
    rescheduleReminder: (id, f, t) => base.rescheduleReminder(id, f, t),
    readOutbox: (s, l) => base.readOutbox(s, l),
    deleteOutbox: (s, ids) => base.deleteOutbox(s, ids),
    close: () => base.close(),
    ...overrides,
  };
}
