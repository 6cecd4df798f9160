/** Small helpers shared by the tests (not part of the package). */
export { delay } from "../src/util/async.ts";

/** Polls `cond` every 5 ms until it holds; throws after `timeout` ms, naming `what`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeout: number,
  what: string,
): Promise<void> {
  const end = performance.now() + timeout;
  while (!(await cond())) {
    if (performance.now() > end) {
      throw new Error(`Timed out after ${timeout} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}
