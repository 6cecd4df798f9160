/**
 * Payload limits against a real nats-server: the node's `maxPayload` never exceeds what the
 * server carries, so a message or reply over the server's `max_payload` gets `bad_payload` at once
 * instead of being dropped by the server (the caller would wait for its timeout).
 */
import assert from "node:assert/strict";
import { createSystem, defineActor } from "../../mod.ts";
import { startNatsCluster } from "../testing/mod.ts";
import { natsMesh } from "./mod.ts";

const Big = defineActor({
  name: "big",
  stateless: true,
  handlers: {
    reply: (_ctx, bytes: number) => "x".repeat(bytes),
    size: (_ctx, s: string) => s.length,
  },
});

Deno.test("a reply or message over the server's max_payload is refused with bad_payload, not dropped", async () => {
  await using cluster = await startNatsCluster({ servers: 1, maxPayload: 64 * 1024 });
  const prefix = `l${crypto.randomUUID().slice(0, 8)}`;
  const mesh = () => natsMesh({ servers: cluster.urls[0]!, prefix, leaseTtl: 2000 });
  // both ask for more than the server carries: the server's limit wins
  const options = { logger: "error" as const, maxPayload: 8 * 1024 * 1024 };
  const host = await createSystem({ ...options, actors: [Big], mesh: mesh(), node: "host" });
  const client = await createSystem({ ...options, mesh: mesh(), node: "client" });
  try {
    const ref = client.ref(Big);
    assert.equal((await ref.ask("reply", 1000)).length, 1000);
    const t0 = performance.now();
    await assert.rejects(ref.ask("reply", 100 * 1024, { timeout: 10_000 }), {
      code: "bad_payload",
    });
    await assert.rejects(ref.ask("size", "y".repeat(100 * 1024), { timeout: 10_000 }), {
      code: "bad_payload",
    });
    const took = performance.now() - t0;
    assert.ok(took < 3000, `refused after ${took.toFixed(0)} ms, not at the 10 s timeout`);
    // a reply that fits the limit but not with its envelope: still an answer, never silence
    const edge = await ref.ask("reply", 64 * 1024 - 12, { timeout: 10_000 }).then(
      (r) => `ok ${r.length}`,
      (err) => err.code,
    );
    assert.ok(edge === "bad_payload" || edge.startsWith("ok"), String(edge));
    assert.equal(await ref.ask("size", "z".repeat(10)), 10, "both nodes stay connected");
  } finally {
    await client.close();
    await host.close();
  }
});
