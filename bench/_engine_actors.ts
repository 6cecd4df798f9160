/**
 * For the benchmarks of the journal's database engine alone (on the calling thread, no worker,
 * no actors): an engine on a file with `n` actors claimed (`ledger/l0` …), and one-event appends
 * of any of them, each batch one commit.
 *
 * @module
 */

import { Engine, type WriteBatch } from "../adapters/libsql/_engine.ts";
import { nativeExecutor } from "../adapters/libsql/_native.ts";
import { encodeAppendLists } from "../adapters/libsql/_wire.ts";

/** An engine with its actors claimed. */
export interface EngineActors {
  /** Appends one event of `data` to each actor of `indexes` (distinct), in one commit. */
  append(indexes: readonly number[], data: Uint8Array): Promise<void>;
  close(): void;
}

const none = { releases: [], deletes: [], custom: [] };

/**
 * Opens the engine on `path` and claims `n` actors (10,000 per commit).
 *
 * @example
 * ```ts
 * import { engineActors } from "./_engine_actors.ts";
 * const e = await engineActors(`${await Deno.makeTempDir()}/e.db`, 10, "normal");
 * await e.append([0, 1, 2], new Uint8Array([1]));
 * e.close();
 * ```
 */
export async function engineActors(
  path: string,
  n: number,
  synchronous: "full" | "normal",
): Promise<EngineActors> {
  const exec = nativeExecutor({ path, busySliceMs: 100, synchronous, checkpointElsewhere: true });
  const engine = new Engine(exec, { url: `file:${path}` });
  await engine.open();
  const epochs: number[] = [];
  for (let i = 0; i < n; i += 10_000) {
    const act = await engine.batch(
      {
        groups: encodeAppendLists([]),
        activations: Array.from(
          { length: Math.min(10_000, n - i) },
          (_, k) => ({ actor: `ledger/l${i + k}`, node: "n" }),
        ),
        ...none,
        now: Date.now(),
      } as WriteBatch,
      60_000,
    );
    for (const r of act.activations) {
      if (!r.ok) throw new Error(`activation failed: ${r.error.message}`);
      epochs.push((r.value as { epoch: number }).epoch);
    }
  }
  const seqs = new Array<number>(n).fill(0);
  return {
    async append(indexes, data) {
      const groups = indexes.map((i) => [{
        actor: `ledger/l${i}`,
        epoch: epochs[i]!,
        expectedSeq: seqs[i]!,
        events: [{ type: "added", version: 1, data, at: Date.now() }],
      }]);
      const out = await engine.batch(
        {
          groups: encodeAppendLists(groups),
          activations: [],
          ...none,
          now: Date.now(),
        } as WriteBatch,
        10_000,
      );
      if (out.groups.some((g: number) => g !== 1)) {
        throw new Error(`an append was refused: ${JSON.stringify(out.error ?? out.heads)}`);
      }
      for (const i of indexes) seqs[i]!++;
    },
    close: () => engine.close(),
  };
}
