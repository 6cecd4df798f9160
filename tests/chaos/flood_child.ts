/**
 * Runs {@link activationFlood} and prints `RESULT {json}`: started by flood_test.ts and
 * bench/chaos.ts as `deno run -A --v8-flags=--expose-gc tests/chaos/flood_child.ts [ids]`,
 * so the heap is measured after full collections in a process of its own.
 */
import { activationFlood } from "./flood.ts";

const randomIds = Number(Deno.args[0] ?? 100_000);
const result = await activationFlood({ randomIds });
console.log(`RESULT ${JSON.stringify(result)}`);
