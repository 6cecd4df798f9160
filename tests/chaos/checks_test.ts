import assert from "node:assert/strict";
import { type AppendTrace, checkAccountLog, checkWriters, type Sent } from "./checks.ts";

const sent = new Map<string, Sent>([
  ["k1", { account: "a", what: "deposit" }],
  ["k2", { account: "a", what: "deposit" }],
  ["p1", { account: "a", what: "plain" }],
  ["t1", { account: "a", what: "tell" }],
  ["kb", { account: "b", what: "deposit" }],
]);

Deno.test("checkAccountLog passes a clean log and sums it", () => {
  const c = checkAccountLog(
    "a",
    [
      { seq: 1, amount: 5, ref: "k1" },
      { seq: 2, amount: 7, ref: "t1" },
      { seq: 3, amount: 1, ref: "k2" },
    ],
    sent,
    ["k1", "k2"],
  );
  assert.deepEqual([c.seqGaps, c.duplicated, c.phantom, c.lost], [[], [], [], []]);
  assert.equal(c.sum, 13);
  assert.deepEqual(c.tellsApplied, ["t1"]);
});

Deno.test("checkAccountLog finds lost, duplicated, phantom and gaps", () => {
  const c = checkAccountLog(
    "a",
    [
      { seq: 1, amount: 5, ref: "k1" },
      { seq: 3, amount: 5, ref: "k1" }, // a gap, and k1 twice
      { seq: 4, amount: 1, ref: "kb" }, // sent to another account
      { seq: 5, amount: 1, ref: "zz" }, // never sent
    ],
    sent,
    ["k1", "k2", "p1"],
  );
  assert.deepEqual(c.seqGaps, ["account a: seq 3 at position 2"]);
  assert.deepEqual(c.duplicated, ["account a: k1 applied 2 times"]);
  assert.equal(c.phantom.length, 2);
  assert.deepEqual(c.lost, [
    "account a: acknowledged k2 missing",
    "account a: acknowledged p1 missing",
  ]);
});

const ap = (node: string, epoch: number, first: number, n = 1): AppendTrace => ({
  node,
  actor: "x",
  epoch,
  first,
  n,
});

Deno.test("checkWriters passes hand-overs and trace gaps", () => {
  const trace = new Map([["x", [ap("n0", 1, 1, 2), ap("n1", 2, 4), ap("n0", 3, 5)]]]);
  assert.deepEqual(checkWriters(trace, new Map([["x", 5]])), []);
});

Deno.test("checkWriters finds a stale writer, overlapping appends and a shared epoch", () => {
  assert.equal(
    checkWriters(new Map([["x", [ap("n0", 2, 1), ap("n1", 1, 2)]]]), new Map()).length,
    1,
    "epoch went back",
  );
  assert.equal(
    checkWriters(new Map([["x", [ap("n0", 1, 1, 2), ap("n1", 2, 2)]]]), new Map()).length,
    1,
    "overlap",
  );
  assert.equal(
    checkWriters(new Map([["x", [ap("n0", 1, 1), ap("n1", 1, 2)]]]), new Map()).length,
    1,
    "one epoch, two nodes",
  );
  assert.equal(
    checkWriters(new Map([["x", [ap("n0", 1, 1, 3)]]]), new Map([["x", 2]])).length,
    1,
    "past the log's end",
  );
});
