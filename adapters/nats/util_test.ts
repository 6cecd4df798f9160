import assert from "node:assert/strict";
import { retry } from "./_util.ts";

// The sanitizers (on by default) fail a test that leaves a timer behind.

Deno.test("retry(): an aborted signal ends the pause between tries at once, with the last error, and leaves no timer", async () => {
  const stop = new AbortController();
  let tries = 0;
  const t0 = performance.now();
  const done = retry(
    () => {
      tries++;
      if (tries === 1) queueMicrotask(() => stop.abort()); // during the first pause
      return Promise.reject(new Error(`busy ${tries}`));
    },
    () => true,
    performance.now() + 30_000,
    "Cannot do the thing",
    stop.signal,
  );
  await assert.rejects(done, (err: Error) => {
    assert.match(err.message, /busy 1/);
    return true;
  });
  assert.equal(tries, 1, "no try after the abort");
  assert.ok(performance.now() - t0 < 1_000, "not waited out");
});

Deno.test("retry(): a signal aborted before a failure stops at that failure, without a pause", async () => {
  const stop = new AbortController();
  stop.abort();
  let tries = 0;
  await assert.rejects(
    retry(
      () => Promise.reject(new Error(`busy ${++tries}`)),
      () => true,
      Infinity,
      "x",
      stop.signal,
    ),
    /busy 1/,
  );
  assert.equal(tries, 1);
});

Deno.test("retry(): without a signal it tries again until it succeeds", async () => {
  let tries = 0;
  const value = await retry(
    () => ++tries < 3 ? Promise.reject(new Error("busy")) : Promise.resolve("ok"),
    () => true,
    performance.now() + 10_000,
    "x",
  );
  assert.equal(value, "ok");
  assert.equal(tries, 3);
});
