/**
 * Public types of the directory (membership, activations) and of leases.
 *
 * @module
 */

/** A live node of the cluster. */
export interface NodeInfo {
  /** The node id (`createSystem({ node })`). */
  readonly id: string;
  /** Actor types the node hosts (empty for a client). */
  readonly types: readonly string[];
  /** Wall-clock time the node started, ms since the epoch. */
  readonly since: number;
}

/** A change seen by `system.directory.watch()`. */
export type DirectoryEvent =
  | { readonly type: "node_joined"; readonly node: NodeInfo }
  | { readonly type: "node_left"; readonly node: NodeInfo }
  | {
    readonly type: "activated";
    readonly actor: { readonly type: string; readonly id: string };
    readonly node: string;
  }
  | {
    readonly type: "deactivated";
    readonly actor: { readonly type: string; readonly id: string };
    readonly node: string;
  };

/** A held lease. */
export interface Lease {
  /** The lease name. */
  readonly name: string;
  /**
   * Fencing token: strictly increasing per lease name, cluster-wide, also when the lease
   * bucket is deleted and created again (a safe integer: the bucket's creation time in ms ×
   * 1000 + the KV revision of the acquiring write). Pass it to whatever the lease protects
   * and refuse writes with an older token.
   */
  readonly token: number;
  /** Aborted when the lease is lost (expired without renewal, or released). */
  readonly signal: AbortSignal;
  /** Releases the lease now; waiting acquirers are woken. Idempotent. */
  release(): Promise<void>;
  /** Same as `release()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of `system.lease()` and `system.lock()`. */
export interface LeaseOptions {
  /** Time to live in ms; the holder renews it every `ttl / 3` while held. @default {5000} */
  ttl?: number;
  /** Gives up waiting (rejects with the signal's reason). */
  signal?: AbortSignal;
  /** Longest wait to acquire, in ms; then rejects with `TimeoutError`. @default {Infinity} */
  timeout?: number;
}

/** Options of `system.elect()`. */
export interface ElectOptions {
  /** Called when this node becomes the leader. */
  onElected?: (lease: Lease) => void | Promise<void>;
  /** Called when this node stops being the leader (lost, or resigned). */
  onRevoked?: () => void | Promise<void>;
  /** Lease time to live in ms. @default {5000} */
  ttl?: number;
}

/** A candidacy in a leader election. */
export interface Leader {
  /** Whether this node is the leader now. */
  readonly isLeader: boolean;
  /** Resolves when this node is elected. */
  readonly elected: Promise<Lease>;
  /** Stops the candidacy; hands leadership over if held. */
  resign(): Promise<void>;
}
