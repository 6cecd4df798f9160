/**
 * Who owns which actor: the claim that lets one node, cluster-wide, activate an actor.
 *
 * The record lives in the journal, beside the actor's epoch (`activations(actor, epoch,
 * owner)`), not in the mesh: a claim is the journal's `activate` with this node as the owner,
 * one atomic step that also bumps the epoch (the fence of the actor's writes) and reads what
 * the activation recovers from. So claiming costs no write beyond the one an activation always
 * made, the broker holds nothing per actor, and claims spread over the journal's shards.
 *
 * Protocol:
 * - a node claims with `activate(actor, { node: self })`: it wins when the record names no
 *   owner, or itself (an earlier incarnation on this node id);
 * - if the record names a node alive per {@link Membership}, the claim fails with that owner
 *   and its epoch (the caller is redirected there);
 * - if it names a node that is dead per membership (silent for `ttl + margin` on this node's
 *   clock, `membership.clock`, or gone with a graceful leave), and an authoritative read of that node's heartbeat
 *   key confirms no newer heartbeat exists (a lagging watch must not kill a live node), the
 *   claim takes over: `activate(actor, { node: self, takeOver: dead })` replaces exactly that
 *   owner, so of two nodes taking over at once one wins;
 * - if it names a node this node has never seen since it started, the claim waits until this
 *   node has observed the membership for `ttl + margin` (a node that just started must not take
 *   over from a live node it has not heard of yet);
 * - a passivation releases the record at its epoch (a later owner's record is never cleared).
 *
 * @module
 */

import { ClosedError, ConflictError, UnavailableError } from "../errors.ts";
import { isOwned, type Journal, type Recovered } from "../journal/types.ts";
import type { Membership } from "./membership.ts";

/** Options of {@link createOwnership}. */
export interface OwnershipOptions {
  /** Where the records live (the journal every node of the cluster shares). */
  journal: Journal;
  /** How many take-over attempts a claim makes before it gives up. @default {5} */
  retries?: number;
}

/** The result of {@link Ownership.claim}. */
export type ClaimResult =
  | {
    readonly ok: true;
    /** What the activation starts from; `recovered.epoch` is its epoch. */
    readonly recovered: Recovered;
    /** The node this activation took over from, if it took over a dead node's record. */
    readonly takenFrom?: string;
  }
  | {
    readonly ok: false;
    /** The live node that owns the actor. */
    readonly owner: string;
    /** Its epoch: higher is newer. */
    readonly revision: number;
  };

/** Options of {@link Ownership.claim}. */
export interface ClaimOptions {
  /** Aborts the claim (it may wait up to `ttl + margin` for membership to settle). */
  signal?: AbortSignal;
}

/**
 * The ownership of actors, seen from one node.
 *
 * @example
 * ```ts
 * import { startMembership } from "./membership.ts";
 * import { createOwnership } from "./ownership.ts";
 * import { memoryJournal } from "../journal/memory.ts";
 * import { inProcessMesh } from "../mesh/in_process.ts";
 * const conn = await inProcessMesh().connect({ node: "n1" });
 * const node = { id: "n1", types: ["account"], since: Date.now() };
 * const membership = await startMembership(conn, { prefix: "troupe", node, ttl: 5_000 });
 * const journal = memoryJournal();
 * const ownership = createOwnership(membership, { journal });
 * const claim = await ownership.claim("account", "alice");
 * if (claim.ok) console.log(await ownership.owner("account", "alice")); // "n1"
 * ownership.close();
 * await membership.close();
 * await conn.close();
 * await journal.close();
 * ```
 */
export interface Ownership {
  /**
   * Claims actor `(type, id)` for this node and starts its activation in the journal. Throws
   * `UnavailableError` when this node is fenced.
   */
  claim(type: string, id: string, options?: ClaimOptions): Promise<ClaimResult>;
  /** Clears the record if it is still this node's at `epoch` (a passivation). */
  release(type: string, id: string, epoch: number): Promise<void>;
  /** The other live node hosting `(type, id)` now, if there is one. */
  locate(type: string, id: string): Promise<string | undefined>;
  /** The node named by the record of `(type, id)`, alive or not (undefined: no record). */
  owner(type: string, id: string): Promise<string | undefined>;
  /** Refuses further claims and ends pending waits. Idempotent. */
  close(): void;
}

/** The journal's name of actor `(type, id)`. */
export function actorKey(type: string, id: string): string {
  return `${type}/${id}`;
}

/** This node's view of actor ownership, on `options.journal` (see the module doc). */
export function createOwnership(membership: Membership, options: OwnershipOptions): Ownership {
  return new OwnershipImpl(membership, options.journal, options.retries ?? 5);
}

class OwnershipImpl implements Ownership {
  readonly #membership: Membership;
  readonly #journal: Journal;
  readonly #retries: number;
  readonly #closing = new AbortController();

  constructor(membership: Membership, journal: Journal, retries: number) {
    this.#membership = membership;
    this.#journal = journal;
    this.#retries = retries;
  }

  async claim(type: string, id: string, options: ClaimOptions = {}): Promise<ClaimResult> {
    const self = this.#membership.self.id;
    const key = actorKey(type, id);
    let takeOver: string | undefined;
    for (let attempt = 0; attempt <= this.#retries;) {
      this.#check(key, options.signal);
      const r = await this.#journal.activate(
        key,
        takeOver === undefined ? { node: self } : { node: self, takeOver },
      );
      this.#check(key, options.signal);
      if (!isOwned(r)) {
        return takeOver === undefined
          ? { ok: true, recovered: r }
          : { ok: true, recovered: r, takenFrom: takeOver };
      }
      const status = this.#membership.status(r.owner);
      if (status === "alive") return { ok: false, owner: r.owner, revision: r.epoch };
      if (status === "unknown") {
        // Never heard of that node since we started: wait until we would have.
        const left = this.#membership.settledAt() - this.#membership.clock.monotonic();
        await this.#sleep(left + 1, options.signal);
        continue;
      }
      if (!(await this.#membership.confirmDead(r.owner))) {
        // Our view lags behind the heartbeats in the bucket: the owner is alive.
        return { ok: false, owner: r.owner, revision: r.epoch };
      }
      takeOver = r.owner;
      attempt++;
    }
    throw new ConflictError(
      `Could not claim actor "${key}": its owner kept changing (${this.#retries + 1} attempts)`,
    );
  }

  #check(key: string, signal: AbortSignal | undefined): void {
    if (this.#closing.signal.aborted) throw new ClosedError("The ownership directory is closed");
    signal?.throwIfAborted();
    if (this.#membership.isFenced()) {
      throw new UnavailableError(
        `Node "${this.#membership.self.id}" is fenced: it cannot claim actor "${key}"`,
      );
    }
  }

  #sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        this.#membership.clock.clearTimeout(timer);
        this.#closing.signal.removeEventListener("abort", onAbort);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(
          signal?.aborted ? signal.reason : new ClosedError("The ownership directory is closed"),
        );
      };
      const timer = this.#membership.clock.setTimeout(() => {
        done();
        resolve();
      }, Math.max(0, ms));
      this.#closing.signal.addEventListener("abort", onAbort, { once: true });
      signal?.addEventListener("abort", onAbort, { once: true });
      if (this.#closing.signal.aborted || signal?.aborted) onAbort();
    });
  }

  release(type: string, id: string, epoch: number): Promise<void> {
    return this.#journal.release(actorKey(type, id), this.#membership.self.id, epoch);
  }

  async owner(type: string, id: string): Promise<string | undefined> {
    return (await this.#journal.owner(actorKey(type, id)))?.owner;
  }

  async locate(type: string, id: string): Promise<string | undefined> {
    const owner = await this.owner(type, id);
    if (owner === undefined) return undefined;
    // This node's own actors are found in its activations, before the record is read: a
    // record of its own without an activation is one whose release has not landed yet.
    if (owner === this.#membership.self.id) return undefined;
    return this.#membership.isAlive(owner) ? owner : undefined;
  }

  close(): void {
    this.#closing.abort();
  }
}
