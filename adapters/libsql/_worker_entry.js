// The entry point of a journal shard's worker thread. It loads the worker's code (`_worker.ts`)
// through a computed specifier so that the runtime does not type-check the worker's module
// graph again for every thread it starts (Deno re-checks a worker's static graph on each
// `new Worker` when the process runs with type checking, which costs about a second per
// thread under `deno test`). The code is type-checked with the rest of the package.
const code = "./_worker" + ".ts";
await import(new URL(code, import.meta.url).href);
