/**
 * The log checks of the chaos run (./chaos.ts), as pure functions over what was sent, what
 * was acknowledged and what the journal holds, so that each can be shown to catch what it
 * names (./checks_test.ts).
 *
 * @module
 */

/** One event of an account's log: a deposit. */
export interface LogEntry {
  seq: number;
  amount: number;
  /** The sender's reference (idempotency key, plain ask or tell id); "" when absent. */
  ref: string;
}

/** What a sent reference was. */
export interface Sent {
  account: string;
  what: "deposit" | "plain" | "tell";
}

/** Violations found in one account's log. */
export interface AccountLogCheck {
  seqGaps: string[];
  duplicated: string[];
  phantom: string[];
  lost: string[];
  /** Sum of the amounts in the log. */
  sum: number;
  /** Refs of tells found in the log. */
  tellsApplied: string[];
}

/**
 * Checks one account's log: seqs run 1..n, no ref twice, every ref was sent to this account,
 * and every acknowledged ref is there.
 *
 * @example
 * ```ts
 * const c = checkAccountLog("a", [{ seq: 1, amount: 5, ref: "k1" }], new Map([["k1", { account: "a", what: "deposit" }]]), ["k1"]);
 * c.lost; // []
 * ```
 */
export function checkAccountLog(
  account: string,
  log: readonly LogEntry[],
  sent: ReadonlyMap<string, Sent>,
  acknowledged: readonly string[],
): AccountLogCheck {
  const out: AccountLogCheck = {
    seqGaps: [],
    duplicated: [],
    phantom: [],
    lost: [],
    sum: 0,
    tellsApplied: [],
  };
  const refs = new Map<string, number>();
  let n = 0;
  for (const e of log) {
    n++;
    if (e.seq !== n) {
      out.seqGaps.push(`account ${account}: seq ${e.seq} at position ${n}`);
      n = e.seq;
    }
    out.sum += e.amount;
    refs.set(e.ref, (refs.get(e.ref) ?? 0) + 1);
    const s = sent.get(e.ref);
    if (s === undefined || s.account !== account) {
      out.phantom.push(`account ${account}: seq ${e.seq} ref ${JSON.stringify(e.ref)}`);
    } else if (s.what === "tell" && refs.get(e.ref) === 1) out.tellsApplied.push(e.ref);
  }
  for (const [ref, times] of refs) {
    if (times > 1) out.duplicated.push(`account ${account}: ${ref} applied ${times} times`);
  }
  for (const ref of acknowledged) {
    if (!refs.has(ref)) out.lost.push(`account ${account}: acknowledged ${ref} missing`);
  }
  return out;
}

/** One successful journal append, from a node's `APPEND {json}` trace line. */
export interface AppendTrace {
  node: string;
  actor: string;
  epoch: number;
  /** Seq of its first event. */
  first: number;
  /** Events appended. */
  n: number;
}

/**
 * Checks that each actor's log had one writer at a time: along the log the writers' epochs
 * never go back, two successful appends never cover one seq, one epoch is one node, and the
 * trace does not reach past the log's end. Lines missing from the trace (a node killed
 * between its commit and its print) leave gaps, which are allowed.
 *
 * @example
 * ```ts
 * checkWriters(new Map([["account/a", [{ node: "n0", actor: "account/a", epoch: 1, first: 1, n: 2 }]]]), new Map([["account/a", 2]])); // []
 * ```
 */
export function checkWriters(
  byActor: ReadonlyMap<string, readonly AppendTrace[]>,
  lengths: ReadonlyMap<string, number>,
): string[] {
  const forks: string[] = [];
  for (const [actor, appends] of byActor) {
    const list = [...appends].sort((a, b) => a.first - b.first || a.epoch - b.epoch);
    let prev: AppendTrace | undefined;
    const writers = new Map<number, string>();
    for (const a of list) {
      const w = writers.get(a.epoch);
      if (w !== undefined && w !== a.node) {
        forks.push(`${actor}: epoch ${a.epoch} written by ${w} and ${a.node}`);
      }
      writers.set(a.epoch, a.node);
      if (prev && a.first < prev.first + prev.n) {
        forks.push(`${actor}: appends overlap: ${JSON.stringify(prev)} ${JSON.stringify(a)}`);
      }
      if (prev && a.epoch < prev.epoch) {
        forks.push(`${actor}: epoch went back: ${JSON.stringify(prev)} ${JSON.stringify(a)}`);
      }
      prev = a;
    }
    const len = lengths.get(actor);
    if (prev && len !== undefined && prev.first + prev.n - 1 > len) {
      forks.push(`${actor}: the trace wrote up to ${prev.first + prev.n - 1}, the log has ${len}`);
    }
  }
  return forks;
}
