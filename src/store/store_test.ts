import assert from "node:assert/strict";
import { msgpack } from "../codec/mod.ts";
import type { ActorError } from "../errors.ts";
import { memoryStore } from "./memory.ts";
import { Stores } from "./store.ts";
import type { StoreBackend } from "./types.ts";

/** A memory backend that counts purge and close calls. */
function counting(): StoreBackend & { purges: number; closes: number } {
  const inner = memoryStore();
  const b = {
    purges: 0,
    closes: 0,
    get: inner.get.bind(inner),
    set: inner.set.bind(inner),
    delete: inner.delete.bind(inner),
    list: inner.list.bind(inner),
    purge: (now: number, limit: number) => {
      b.purges++;
      return inner.purge(now, limit);
    },
    close: () => {
      b.closes++;
      return inner.close();
    },
  };
  return b;
}

const isCode = (code: string) => (err: ActorError) => err.code === code;

/**
 * Runs `fn` while recording the timers it sets, and returns those still pending at its end
 * (Deno's test sanitizers do not report timers).
 */
async function pendingTimersAfter(fn: () => Promise<void>): Promise<number> {
  const { setTimeout: set, clearTimeout: clear } = globalThis;
  const pending = new Set<unknown>();
  globalThis.setTimeout = ((cb: () => void, ms?: number) => {
    const id = set(() => {
      pending.delete(id);
      cb();
    }, ms);
    pending.add(id);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id?: number) => {
    pending.delete(id);
    clear(id);
  }) as typeof clearTimeout;
  try {
    await fn();
  } finally {
    globalThis.setTimeout = set;
    globalThis.clearTimeout = clear;
  }
  for (const id of pending) clear(id as number);
  return pending.size;
}

Deno.test("Stores.close() clears the purge timer", async () => {
  const left = await pendingTimersAfter(async () => {
    const stores = new Stores({ backend: memoryStore(), codec: msgpack, maxPayload: 1024 });
    await stores.open("s").set("k", 1, { ttl: 60_000 });
    await stores.close();
  });
  assert.equal(left, 0, "a timer was left pending after close()");
});

Deno.test("Stores purges expired records in the background, and stops on close()", async () => {
  const backend = counting();
  const stores = new Stores({ backend, codec: msgpack, maxPayload: 1024, purgeIntervalMs: 10 });
  assert.equal(backend.purges, 0, "nothing runs before a store is opened");
  const s = stores.open("sessions");
  assert.equal(stores.open("sessions"), s, "one Store object per name");
  await s.set("gone", 1, { ttl: 1 });
  await s.set("kept", 2);
  const deadline = Date.now() + 5_000;
  // The backend's own view, at a time before the expiry: only a purge removes the record.
  while ((await backend.list("sessions", { prefix: "", limit: 10 }, 0)).length > 1) {
    assert.ok(Date.now() < deadline, "the expired record was not purged within 5 s");
    await new Promise((r) => setTimeout(r, 10));
  }
  await stores.close();
  const after = backend.purges;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(backend.purges, after, "a purge ran after close()");
  assert.equal(backend.closes, 0, "a backend given in the options is not closed");
  assert.throws(() => stores.open("sessions"), isCode("closed"));
  await assert.rejects(s.get("kept"), isCode("closed"));
});

Deno.test("Stores keeps purging after a failed purge, and reports it", async () => {
  const backend = counting();
  let fail = true;
  const errors: string[] = [];
  const stores = new Stores({
    backend: {
      ...backend,
      purge: (now, limit) => {
        backend.purges++;
        return fail ? Promise.reject(new Error("disk on fire")) : backend.purge(now, limit);
      },
    },
    codec: msgpack,
    maxPayload: 1024,
    purgeIntervalMs: 5,
    onError: (msg, err) => errors.push(`${msg}: ${(err as Error).message}`),
  });
  try {
    stores.open("s");
    const deadline = Date.now() + 5_000;
    while (backend.purges < 2) {
      assert.ok(Date.now() < deadline, "the purge did not run again after failing");
      await new Promise((r) => setTimeout(r, 5));
    }
    fail = false;
    assert.match(errors[0]!, /Purging expired store records failed: disk on fire/);
  } finally {
    await stores.close();
  }
});
