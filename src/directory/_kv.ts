/**
 * What membership, ownership and leases share about their key-value buckets: how a bucket is
 * opened, what a compare-and-set conflict looks like, and how a write is checked on buckets
 * whose compare-and-set is not serialized. Internal: not exported from `mod.ts`.
 *
 * @module
 */

import { type KvBucket, type KvEntry, type MeshConnection, MeshError } from "../mesh/types.ts";
import { delay } from "../util/async.ts";
import { systemClock } from "../util/clock.ts";

/**
 * Opens a directory bucket (one value per key; `replicas` when given, else the mesh's choice).
 */
export function openDirectoryBucket(
  conn: MeshConnection,
  name: string,
  replicas: number | undefined,
): Promise<KvBucket> {
  return conn.kv(name, replicas === undefined ? { history: 1 } : { history: 1, replicas });
}

/** Whether a KV write failed its condition (`create` on an existing key, a stale revision). */
export function isConflict(err: unknown): boolean {
  return err instanceof MeshError && err.code === "kv_conflict";
}

/** How long a write on a bucket without serialized CAS waits for concurrent writes to land. */
export const CAS_SETTLE_MS = 30;

/**
 * After a compare-and-set write that succeeded on a bucket without serialized CAS (an R3
 * bucket on nats-server < 2.9.21, #4320, where a concurrent write expecting the same revision
 * may succeed too): waits {@link CAS_SETTLE_MS} for such writes to be applied, then returns
 * the key's latest entry (authoritative read), or `null` when it is gone or unreadable. The
 * later write stands: a writer that no longer sees its own revision there lost.
 */
export async function latestAfterSettle(bucket: KvBucket, key: string): Promise<KvEntry | null> {
  // Real time, not the node's clock: this waits for a broker's replicas, which a virtual clock
  // cannot hurry (only replicated NATS buckets get here; the in-process mesh serializes CAS).
  await delay(systemClock, CAS_SETTLE_MS);
  return await bucket.get(key).catch(() => null);
}
