import assert from "node:assert/strict";
import {
  checkRegister,
  type HistoryOp,
  type RegisterOp,
  type RegisterResult,
} from "./linearizability.ts";

let n = 0;
function op(
  o: RegisterOp,
  invokedAt: number,
  completedAt: number,
  result?: RegisterResult,
): HistoryOp {
  return { id: `op${n++}`, op: o, invokedAt, completedAt, result };
}
const w = (value: number) => ({ kind: "write" as const, value });
const r = { kind: "read" as const };
const cas = (expected: number, next: number) => ({ kind: "cas" as const, expected, next });
const ok = (value: number) => ({ ok: true, value });

Deno.test("checkRegister accepts sequential and overlapping histories that linearize", () => {
  assert.equal(checkRegister([]).linearizable, true);
  assert.equal(
    checkRegister([op(w(1), 0, 1, ok(1)), op(r, 2, 3, ok(1)), op(cas(1, 2), 4, 5, ok(2))])
      .linearizable,
    true,
  );
  // a read overlapping a write may see either value
  assert.equal(checkRegister([op(w(1), 0, 10, ok(1)), op(r, 1, 2, ok(0))]).linearizable, true);
  assert.equal(checkRegister([op(w(1), 0, 10, ok(1)), op(r, 1, 2, ok(1))]).linearizable, true);
  // a failed cas reports the current value
  assert.equal(
    checkRegister([op(w(5), 0, 1, ok(5)), op(cas(3, 4), 2, 3, { ok: false, value: 5 })])
      .linearizable,
    true,
  );
});

Deno.test("checkRegister rejects stale reads, lost writes and impossible cas results", () => {
  // a read after a completed write sees the old value
  assert.equal(checkRegister([op(w(1), 0, 1, ok(1)), op(r, 2, 3, ok(0))]).linearizable, false);
  // two sequential reads go back in time
  assert.equal(
    checkRegister([
      op(w(1), 0, 10, ok(1)),
      op(r, 1, 2, ok(1)),
      op(r, 3, 4, ok(0)),
    ]).linearizable,
    false,
  );
  // two cas from the same expected value both succeed (a fork)
  assert.equal(
    checkRegister([op(cas(0, 1), 0, 5, ok(1)), op(cas(0, 2), 1, 6, ok(2))]).linearizable,
    false,
  );
  // a failed cas that reports a value never written
  assert.equal(
    checkRegister([op(cas(3, 4), 0, 1, { ok: false, value: 9 })]).linearizable,
    false,
  );
});

Deno.test("checkRegister: an unknown outcome may apply at any later time, or never", () => {
  // a write that timed out is seen much later
  assert.equal(
    checkRegister([op(w(1), 0, 1), op(r, 5, 6, ok(0)), op(r, 10, 11, ok(1))]).linearizable,
    true,
  );
  // ... or never
  assert.equal(checkRegister([op(w(1), 0, 1), op(r, 5, 6, ok(0))]).linearizable, true);
  // but not before it was invoked
  assert.equal(checkRegister([op(r, 0, 1, ok(1)), op(w(1), 2, 3)]).linearizable, false);
  // and once seen, it stays (no going back to the old value)
  assert.equal(
    checkRegister([op(w(1), 0, 1), op(r, 5, 6, ok(1)), op(r, 10, 11, ok(0))]).linearizable,
    false,
  );
  // an unknown cas applies only when its expected value is current
  assert.equal(
    checkRegister([op(w(7), 0, 1, ok(7)), op(cas(0, 2), 2, 3), op(r, 4, 5, ok(2))]).linearizable,
    false,
  );
});

Deno.test("checkRegister stays fast on a long history with concurrency and unknowns", () => {
  const ops: HistoryOp[] = [];
  let value = 0;
  let t = 0;
  for (let i = 1; i <= 300; i++) {
    // three overlapping clients: a write, a read of its value, and an unknown write
    ops.push(op(w(i * 10), t, t + 3, ok(i * 10)));
    ops.push(op(r, t + 1, t + 4, ok(i * 10)));
    if (i % 10 === 0) ops.push(op(w(i * 10 + 1), t + 2, t + 2.5));
    value = i * 10;
    t += 5;
  }
  ops.push(op(r, t, t + 1, ok(value)));
  const res = checkRegister(ops);
  assert.equal(res.linearizable, true);
  assert.ok(res.steps < 200_000, `steps ${res.steps}`);
});
