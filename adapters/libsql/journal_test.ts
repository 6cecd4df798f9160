import assert from "node:assert/strict";
import { journalConformance } from "../../src/journal/conformance.ts";
import { libsqlJournal } from "./journal.ts";

const tmp = await Deno.makeTempDir({ prefix: "troupe-journal-test-" });
let n = 0;

journalConformance(
  "libsql file:",
  () => Promise.resolve(libsqlJournal({ url: `file:${tmp}/c${n++}.db` })),
);
journalConformance("libsql :memory:", () => Promise.resolve(libsqlJournal({ url: ":memory:" })));
