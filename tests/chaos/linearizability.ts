/**
 * A linearizability checker for a single register (read / write / compare-and-set), in the
 * style of Wing & Gong with Lowe's memoization, as Porcupine implements it: the history is a
 * list of call and return entries ordered by time; the search linearizes, one at a time, a
 * call whose return has not been passed yet, lifting it out of the list, and backtracks at a
 * return entry it cannot pass. A set of (linearized ops, register value) already explored
 * cuts repeated work.
 *
 * An operation whose outcome is unknown (a timeout, `unavailable`, a dropped connection) may
 * or may not have taken effect, at any time after its invocation: its return is placed after
 * every known one (linearizing it last is the same as it never having happened) and any
 * result is accepted for it. Reads with an unknown outcome observe nothing and are dropped.
 *
 * Registers are independent objects, so a history is checked per key (P-compositionality).
 *
 * @module
 */

/** The register's value; `0` initially. Written values are unique in the chaos load. */
export type Value = number;

/** One operation on a register. */
export type RegisterOp =
  | { kind: "read" }
  | { kind: "write"; value: Value }
  | { kind: "cas"; expected: Value; next: Value };

/** What the actor answered: `ok` and the value (read: current; write/cas ok: new; cas failed: current). */
export interface RegisterResult {
  ok: boolean;
  value: Value;
}

/** One recorded operation: invocation and completion times on one monotonic clock. */
export interface HistoryOp {
  /** Which client and op, for reports. */
  id: string;
  op: RegisterOp;
  /** `performance.now()` just before the call. */
  invokedAt: number;
  /** `performance.now()` when the call settled. */
  completedAt: number;
  /** The answer, or `undefined` when the outcome is unknown (it may or may not have applied). */
  result: RegisterResult | undefined;
}

/** The outcome of checking one key. */
export interface CheckResult {
  /** `true`: linearizable; `false`: not; `undefined`: gave up after `maxSteps`. */
  linearizable: boolean | undefined;
  /** Search steps taken. */
  steps: number;
  /** Operations checked (unknown reads dropped). */
  ops: number;
}

/**
 * Applies `op` to `state` given the observed result; returns the next state, or `undefined`
 * when the result is impossible from `state`.
 */
function step(state: Value, op: RegisterOp, result: RegisterResult | undefined): Value | undefined {
  switch (op.kind) {
    case "read":
      if (result === undefined) return state;
      return result.ok && result.value === state ? state : undefined;
    case "write":
      if (result === undefined) return op.value;
      return result.ok && result.value === op.value ? op.value : undefined;
    case "cas":
      if (state === op.expected) {
        if (result === undefined) return op.next;
        return result.ok && result.value === op.next ? op.next : undefined;
      }
      if (result === undefined) return state;
      return !result.ok && result.value === state ? state : undefined;
  }
}

interface Entry {
  /** Index of the op; the call and its return share it. */
  id: number;
  call: boolean;
  time: number;
  /** For a call: its return entry. */
  match: Entry | undefined;
  prev: Entry | undefined;
  next: Entry | undefined;
}

/**
 * Checks that `history` (the operations on one register, starting from value `initial`) is
 * linearizable. Gives up (`linearizable: undefined`) after `maxSteps` search steps.
 *
 * @example
 * ```ts
 * checkRegister([
 *   { id: "a", op: { kind: "write", value: 1 }, invokedAt: 0, completedAt: 2, result: { ok: true, value: 1 } },
 *   { id: "b", op: { kind: "read" }, invokedAt: 1, completedAt: 3, result: { ok: true, value: 0 } },
 * ]).linearizable; // true: the read took effect before the write
 * ```
 */
export function checkRegister(
  history: readonly HistoryOp[],
  initial: Value = 0,
  maxSteps = 2_000_000,
): CheckResult {
  const ops = history.filter((h) => !(h.op.kind === "read" && h.result === undefined));
  const n = ops.length;
  if (n === 0) return { linearizable: true, steps: 0, ops: 0 };
  const entries: Entry[] = [];
  ops.forEach((h, id) => {
    const ret: Entry = {
      id,
      call: false,
      time: h.result === undefined ? Infinity : h.completedAt,
      match: undefined,
      prev: undefined,
      next: undefined,
    };
    entries.push({
      id,
      call: true,
      time: h.invokedAt,
      match: ret,
      prev: undefined,
      next: undefined,
    });
    entries.push(ret);
  });
  // By time; at equal times calls first (treated as concurrent: the permissive choice).
  entries.sort((a, b) => a.time - b.time || (a.call === b.call ? 0 : a.call ? -1 : 1));
  const head: Entry = {
    id: -1,
    call: false,
    time: -Infinity,
    match: undefined,
    prev: undefined,
    next: undefined,
  };
  let last = head;
  for (const e of entries) {
    last.next = e;
    e.prev = last;
    last = e;
  }
  const lift = (e: Entry) => {
    e.prev!.next = e.next;
    if (e.next) e.next.prev = e.prev;
    const m = e.match!;
    m.prev!.next = m.next;
    if (m.next) m.next.prev = m.prev;
  };
  const unlift = (e: Entry) => {
    const m = e.match!;
    m.prev!.next = m;
    if (m.next) m.next.prev = m;
    e.prev!.next = e;
    if (e.next) e.next.prev = e;
  };
  let bits = 0n;
  const seen = new Set<string>();
  const stack: { entry: Entry; state: Value }[] = [];
  let state = initial;
  let entry = head.next;
  let steps = 0;
  while (head.next !== undefined) {
    if (++steps > maxSteps) return { linearizable: undefined, steps, ops: n };
    if (entry === undefined) return { linearizable: false, steps, ops: n };
    if (entry.call) {
      const h = ops[entry.id]!;
      const next = step(state, h.op, h.result);
      if (next !== undefined) {
        const nextBits = bits | (1n << BigInt(entry.id));
        const key = `${nextBits.toString(36)}:${next}`;
        if (!seen.has(key)) {
          seen.add(key);
          stack.push({ entry, state });
          state = next;
          bits = nextBits;
          lift(entry);
          entry = head.next;
          continue;
        }
      }
      entry = entry.next;
    } else {
      // A return whose call is not linearized yet: undo the last choice.
      const top = stack.pop();
      if (top === undefined) return { linearizable: false, steps, ops: n };
      state = top.state;
      bits &= ~(1n << BigInt(top.entry.id));
      unlift(top.entry);
      entry = top.entry.next;
    }
  }
  return { linearizable: true, steps, ops: n };
}
