/**
 * The libSQL journal of Troupe: actors' event logs, snapshots, idempotency records and
 * reminders in one SQLite/libSQL database — a local file (WAL mode), `:memory:`, or a remote
 * sqld/Turso server — with epoch fencing and group commit.
 *
 * @example
 * ```ts
 * import { libsqlJournal } from "@troupe/troupe/libsql";
 * const journal = libsqlJournal({ url: "file:./data/troupe.db" });
 * const { epoch, seq, events } = await journal.activate("account/alice");
 * console.log(epoch, seq, events.length);
 * await journal.close();
 * ```
 *
 * @module
 */

export {
  type LibsqlJournal,
  libsqlJournal,
  type LibsqlJournalOptions,
  SCHEMA_VERSION,
} from "./journal.ts";
export { libsqlStore, type LibsqlStoreOptions, STORE_SCHEMA_VERSION } from "./store.ts";
// the core types the exports above refer to (so that this entry point documents on its own)
export type * from "../../mod.ts";
