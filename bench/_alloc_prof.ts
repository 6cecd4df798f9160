/**
 * Allocation sampling for the profiling harness (`bench/_prof_ask.ts`), through V8's sampling
 * heap profiler (`node:inspector`): every allocation is counted, also those collected since
 * (young and old generation), so the profile shows what a path allocates, not what it keeps.
 * Read the file with `bench/_prof_top.ts`.
 *
 * @module
 */
import { Session } from "node:inspector";

let session: Session | undefined;

function post(method: string, params: object = {}): Promise<unknown> {
  return new Promise((resolve, reject) =>
    session!.post(method, params, (err: unknown, res: unknown) => err ? reject(err) : resolve(res))
  );
}

/** Starts sampling every `interval` bytes allocated (default 4 KiB). */
export async function startAllocProfile(interval = 4096): Promise<void> {
  session = new Session();
  session.connect();
  await post("HeapProfiler.enable");
  await post("HeapProfiler.startSampling", {
    samplingInterval: interval,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
}

/** Stops sampling and writes the profile (`.heapprofile` JSON) to `path`. */
export async function stopAllocProfile(path: string): Promise<void> {
  const r = await post("HeapProfiler.stopSampling") as { profile: unknown };
  await Deno.writeTextFile(path, JSON.stringify(r.profile));
  session!.disconnect();
  session = undefined;
}
