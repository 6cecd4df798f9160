/**
 * Profiles for the profiling harness (`bench/_prof_ask.ts`) over a chosen span, through
 * `node:inspector`: allocations with V8's sampling heap profiler (every allocation counted, also
 * those collected since, young and old generation, so the profile shows what a path allocates,
 * not what it keeps; with `PROF_PROMOTED=1`, only what outlived a young collection: what was
 * promoted, pretenured or still alive), or CPU with V8's sampling profiler (unlike `--cpu-prof`, without the
 * process's start-up, warm-up and shutdown). Read the files with `bench/_prof_top.ts`.
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
    includeObjectsCollectedByMinorGC: !Deno.env.get("PROF_PROMOTED"),
  });
}

/** Starts CPU sampling (every `intervalUs` µs, default 100). */
export async function startCpuProfile(intervalUs = 100): Promise<void> {
  session = new Session();
  session.connect();
  await post("Profiler.enable");
  await post("Profiler.setSamplingInterval", { interval: intervalUs });
  await post("Profiler.start");
}

/** Stops CPU sampling and writes the profile (`.cpuprofile` JSON) to `path`. */
export async function stopCpuProfile(path: string): Promise<void> {
  const r = await post("Profiler.stop") as { profile: unknown };
  await Deno.writeTextFile(path, JSON.stringify(r.profile));
  session!.disconnect();
  session = undefined;
}

/** Stops sampling and writes the profile (`.heapprofile` JSON) to `path`. */
export async function stopAllocProfile(path: string): Promise<void> {
  const r = await post("HeapProfiler.stopSampling") as { profile: unknown };
  await Deno.writeTextFile(path, JSON.stringify(r.profile));
  session!.disconnect();
  session = undefined;
}
