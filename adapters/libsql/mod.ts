/**
 * The libSQL journal of Troupe: actors' event logs, snapshots, idempotency records and
 * reminders in one SQLite/libSQL database — a local file (WAL mode), `:memory:`, or a remote
 * sqld/Turso server — with epoch fencing and group commit.
 *
 * @example
 * ```ts
 * import { isOwned } from "@troupe/troupe";
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

export {
  type LibsqlJournal,
  libsqlJournal,
  type LibsqlJournalOptions,
  SCHEMA_VERSION,
} from "./journal.ts";
export { libsqlStore, type LibsqlStoreOptions, STORE_SCHEMA_VERSION } from "./store.ts";
