import assert from "node:assert/strict";
import { msgpack } from "../codec/mod.ts";
import type { ActorError } from "../errors.ts";
import { memoryStore } from "./memory.ts";
import { Stores } from "./store.ts";
import type { StoreBackend } from "./types.ts";
import { virtualClock } from "../util/virtual_clock.ts";

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

Deno.test("Stores.close() clears the purge timer", async () => {
  const clock = virtualClock();
  const stores = new Stores({ backend: memoryStore(), codec: msgpack, maxPayload: 1024, clock });
  await stores.open("s").set("k", 1, { ttl: 60_000 });
  assert.equal(clock.pending, 1, "the purge is scheduled once a store is open");
  await stores.close();
  assert.equal(clock.pending, 0, "a timer was left pending after close()");
});

Deno.test("Stores purges expired records in the background, and stops on close()", async () => {
  const backend = counting();
  const clock = virtualClock();
  const stores = new Stores({
    backend,
    codec: msgpack,
    maxPayload: 1024,
    purgeIntervalMs: 10,
    clock,
  });
  assert.equal(backend.purges, 0, "nothing runs before a store is opened");
  const s = stores.open("sessions");
  assert.equal(stores.open("sessions"), s, "one Store object per name");
  await s.set("gone", 1, { ttl: 1 });
  await s.set("kept", 2);
  // The backend's own view, at a time before the expiry: only a purge removes the record.
  const listed = async () => (await backend.list("sessions", { prefix: "", limit: 10 }, 0)).length;
  await clock.advance(9);
  assert.equal(backend.purges, 0);
  assert.equal(await listed(), 2, "expired, but not purged yet");
  await clock.advance(1);
  assert.equal(backend.purges, 1, "purged every purgeIntervalMs");
  assert.equal(await listed(), 1, "the expired record was purged");
  await stores.close();
  await clock.advance(1_000);
  assert.equal(backend.purges, 1, "no purge after close()");
  assert.equal(backend.closes, 0, "a backend given in the options is not closed");
  assert.throws(() => stores.open("sessions"), isCode("closed"));
  await assert.rejects(s.get("kept"), isCode("closed"));
});

Deno.test("Stores keeps purging after a failed purge, and reports it", async () => {
  const backend = counting();
  let fail = true;
  const errors: string[] = [];
  const clock = virtualClock();
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
    clock,
  });
  try {
    stores.open("s");
    await clock.advance(10);
    assert.equal(backend.purges, 2, "tried again the next interval after failing");
    fail = false;
    assert.match(errors[0]!, /Purging expired store records failed: disk on fire/);
  } finally {
    await stores.close();
  }
});
