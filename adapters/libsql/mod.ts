/**
 * The libSQL journal of Troupe: actors' event logs, snapshots, idempotency records and
 * reminders in one SQLite/libSQL database — a local file (WAL mode), `:memory:`, or a remote
 * sqld/Turso server — with epoch fencing and group commit.
 *
 * @example
 * ```ts
 * import { isOwned } from "@troupe/troupe/spi";
 * import { libsqlJournal } from "@troupe/troupe/libsql";
 * const journal = libsqlJournal({ url: "file:./data/troupe.db" });
 * const rec = await journal.activate("account/alice", { node: "n1" });
 * if (isOwned(rec)) console.log(`owned by ${rec.owner}`);
 * else console.log(rec.epoch, rec.seq, rec.events.length);
 * await journal.close();
 * ```
 *
 * @module
 */

import type { StoreBackend } from "../../spi.ts";
import { createDatabaseDirs } from "./_dirs.ts";
import { type LibsqlJournal, libsqlJournal as open, type LibsqlJournalOptions } from "./journal.ts";

export { type LibsqlJournal, type LibsqlJournalOptions, SCHEMA_VERSION } from "./journal.ts";
export { STORE_SCHEMA_VERSION } from "./store.ts";

/**
 * Options of {@link libsqlStore}: those of {@link libsqlJournal}, whose connection it opens.
 *
 * @example
 * ```ts
 * import type { LibsqlStoreOptions } from "@troupe/troupe/libsql";
 * const options: LibsqlStoreOptions = { url: "file:./data/troupe.db" };
 * ```
 */
export type LibsqlStoreOptions = LibsqlJournalOptions;

/**
 * Opens a journal on a libSQL database (see {@link LibsqlJournalOptions} for the URLs and
 * options, and {@link LibsqlJournal} for what it offers besides the `Journal` port). The
 * directory of a `file:` database is created when it is missing. The database is opened,
 * switched to WAL mode and given its schema on first use.
 *
 * @example
 * ```ts
 * import { libsqlJournal } from "@troupe/troupe/libsql";
 * const journal = libsqlJournal({ url: "file:./data/troupe.db" });
 * const { epoch } = await journal.activate("account/alice"); // a new epoch fences older ones
 * console.log(epoch); // 1
 * await journal.close();
 * ```
 */
export function libsqlJournal(options: LibsqlJournalOptions): LibsqlJournal {
  createDatabaseDirs(options);
  return open(options);
}

/**
 * Opens a record store backend on a libSQL database by itself, for
 * `createSystem({ store: libsqlStore({ url }) })` or used directly (usually not needed: a
 * system with a libSQL journal keeps its stores in the journal's database). It opens the
 * database as {@link libsqlJournal} does (WAL, busy handling, the journal's tables too), and
 * closing it closes that connection. The directory of a `file:` database is created when it is
 * missing.
 *
 * @example
 * ```ts
 * import { libsqlStore } from "@troupe/troupe/libsql";
 * const backend = libsqlStore({ url: ":memory:" });
 * const rev = await backend.set("carts", "u1", new Uint8Array([1]), { ifRevision: 0 }, Date.now());
 * console.log(rev); // 1
 * await backend.close();
 * ```
 */
export function libsqlStore(options: LibsqlStoreOptions): StoreBackend {
  const journal = libsqlJournal(options);
  const store = journal.openStore();
  return {
    get: (...args) => store.get(...args),
    set: (...args) => store.set(...args),
    delete: (...args) => store.delete(...args),
    list: (...args) => store.list(...args),
    purge: (...args) => store.purge(...args),
    close: async () => {
      await store.close();
      await journal.close();
    },
  };
}
