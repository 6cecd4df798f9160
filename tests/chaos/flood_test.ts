/**
 * Floods on one in-process node (see ./flood.ts): 10x the mailbox capacity at one actor, and
 * 100k random ids against `maxActivations` 10k (in a child process with `--expose-gc`).
 */
import assert from "node:assert/strict";
import { type ActivationFloodResult, mailboxFlood } from "./flood.ts";

const MB = 1024 * 1024;

Deno.test("a flood of 10x the mailbox at one actor: the excess is refused at once with overloaded, the others are not held behind it", async () => {
  const r = await mailboxFlood();
  console.log(
    `[flood] ${r.sent} asks at one actor (mailboxSize ${r.mailboxSize}): ${r.answered} answered, ${r.overloaded} overloaded ${
      JSON.stringify(r.other)
    }; sent in ${r.sendMs.toFixed(0)} ms, last refusal at ${
      r.lastRefusalMs.toFixed(0)
    } ms, all settled after ${r.settledMs.toFixed(0)} ms; heap +${
      (r.heapGrowth / MB).toFixed(1)
    } MB; others' p99 ${r.underFlood.p99.toFixed(3)} ms (n ${r.underFlood.n}) vs baseline ${
      r.baseline.p99.toFixed(3)
    } ms (n ${r.baseline.n}); p50 ${r.underFlood.p50.toFixed(3)} vs ${
      r.baseline.p50.toFixed(3)
    } ms; flooded actor's turns while one waited: p99 ${r.overtaken.p99}, max ${r.overtaken.max}`,
  );
  assert.deepEqual(r.other, {});
  assert.ok(r.answered <= r.mailboxSize + 1, `answered ${r.answered}: the mailbox held more`);
  assert.equal(r.answered + r.overloaded, r.sent);
  assert.ok(r.overloaded >= r.sent - r.mailboxSize - 1, `only ${r.overloaded} refused`);
  // refused at once (while sending), not after waiting behind the queue
  assert.ok(r.lastRefusalMs < r.settledMs / 2, `last refusal at ${r.lastRefusalMs} ms`);
  assert.ok(r.heapGrowth < 256 * MB, `heap grew by ${r.heapGrowth} bytes`);
  assert.ok(r.underFlood.n >= 100 && r.baseline.n >= 100, "enough samples");
  // What the node decides: another actor's ask is never queued behind the flooded actor's
  // backlog (1000 turns of 1 ms): at most one of its turns runs while the ask waits.
  assert.ok(r.overtaken.p99 <= 1, `${r.overtaken.p99} flooded turns ran while an ask waited`);
  // What the machine also decides: the typical ask is as fast as without the flood (2x, with
  // 1 ms of slack; the latencies are tens of microseconds). The median, not the p99: on a
  // machine shared with other test processes, the p99 of ~1000 samples is the OS's scheduling
  // stalls (209 ms seen beside the chaos test), the same with or without a flood.
  assert.ok(
    r.underFlood.p50 <= Math.max(2 * r.baseline.p50, r.baseline.p50 + 1),
    `others' p50 ${r.underFlood.p50} ms vs baseline ${r.baseline.p50} ms`,
  );
});

// Fails on the in-process mesh as of this commit (found by this test, diagnosed with a heap
// snapshot): every passivated activation stays reachable, ~1.8 KB per id. The activation's
// subject subscription is ended with `Sub.drain()` (src/dispatch/serve.ts `activated()`), and
// `Sub.drain()` in src/mesh/in_process.ts takes the sub out of the routing trie but never out of
// its connection's `#subs` set (only `unsubscribe()` calls `conn.forget()`), so the set keeps
// each Sub, its handler closure and the Activation. With that one line added the growth drops
// to ~400 B per id: the rest is the in-process KV keeping a DEL entry per released ownership
// key (`act` bucket) forever; with neither, ~50 B per id (flat within 2x).
Deno.test("100k random ids against maxActivations 10k: the heap stays flat", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./flood_child.ts", import.meta.url).href,
      "100000",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const line = text.split("\n").find((l) => l.startsWith("RESULT "));
  assert.ok(out.success && line, `child failed: ${new TextDecoder().decode(out.stderr)}`);
  const r = JSON.parse(line.slice(7)) as ActivationFloodResult;
  const full = r.heapFull - r.heapEmpty;
  const after = r.heapAfter - r.heapEmpty;
  console.log(
    `[flood] ${r.maxActivations} activations: heap +${
      (full / MB).toFixed(1)
    } MB; after ${r.randomIds} random ids: +${(after / MB).toFixed(1)} MB (${
      ((after - full) / r.randomIds).toFixed(0)
    } B per id; RSS ${r.rss.map((x) => (x / MB).toFixed(0)).join(" → ")} MB; gc ${r.gc}); ${
      r.rate.toFixed(0)
    } asks/s; failures ${JSON.stringify(r.failed)}`,
  );
  assert.equal(r.gc, true);
  assert.deepEqual(r.failed, {}, `asks failed: ${r.firstErrors.join("; ")}`);
  assert.ok(
    after < 2 * full,
    `heap after ${r.randomIds} random ids (+${
      (after / MB).toFixed(1)
    } MB) is not within 2x of the heap with ${r.maxActivations} actors (+${
      (full / MB).toFixed(1)
    } MB): passivated activations are retained`,
  );
});
