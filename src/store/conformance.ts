/**
 * The conformance suite of the {@link StoreBackend} port: every implementation registers it
 * in its own test file and must pass all of it. The tests go through {@link openStore} (the
 * layer `system.store()` returns), on a fake clock, so they cover the checks and encoding
 * users see as well as the backend.
 *
 * @module
 */

import assert from "node:assert/strict";
import { msgpack } from "../codec/mod.ts";
import { ActorError } from "../errors.ts";
import { openStore } from "./store.ts";
import type { Store, StoreBackend } from "./types.ts";

async function rejectsWith(p: Promise<unknown>, code: string, match?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ActorError, `expected an ActorError, got ${String(err)}`);
    assert.equal(err.code, code, `unexpected code of: ${err.message}`);
    if (match) assert.match(err.message, match);
    return true;
  });
}

async function keys(it: AsyncIterable<{ key: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const r of it) out.push(r.key);
  return out;
}

/** What each conformance test gets: the backend, a clock it can move, and `store(name)`. */
interface Fixture {
  readonly backend: StoreBackend;
  /** The fake wall clock, ms. */
  now: number;
  /** The store named `name` on the backend, on the fake clock, 64 KiB values at most. */
  store<V = unknown>(name: string): Store<V>;
}

/**
 * Registers the Store conformance tests with `Deno.test`, each on a fresh backend from `open`
 * (closed at the end of the test).
 *
 * @param name Shown in front of each test name, e.g. `"memory"` or `"libsql file:"`.
 * @param open Opens a fresh, empty backend.
 *
 * @example
 * ```ts
 * // my_store_test.ts, run by `deno test`
 * import { memoryStore, storeConformance } from "@troupe/troupe/spi";
 * storeConformance("memory", () => Promise.resolve(memoryStore()));
 * ```
 */
export function storeConformance(name: string, open: () => Promise<StoreBackend>): void {
  function test(title: string, fn: (f: Fixture) => Promise<void>): void {
    Deno.test(`store conformance (${name}): ${title}`, async () => {
      const backend = await open();
      const f: Fixture = {
        backend,
        now: 1_700_000_000_000,
        store: <V>(n: string) =>
          openStore<V>(backend, n, { codec: msgpack, maxPayload: 64 * 1024, now: () => f.now }),
      };
      try {
        await fn(f);
      } finally {
        await backend.close();
      }
    });
  }

  test("set() then get() returns the value and revision; an absent key gives undefined", async (f) => {
    const s = f.store<{ items: string[] }>("carts");
    assert.equal(await s.get("u1"), undefined);
    const { revision, ...rest } = await s.set("u1", { items: ["apple"] });
    assert.ok(Number.isSafeInteger(revision) && revision > 0);
    assert.deepEqual(rest, {});
    assert.deepEqual(await s.get("u1"), { key: "u1", value: { items: ["apple"] }, revision });
    assert.equal(await s.get("u2"), undefined);
  });

  test("values go through the codec: the same types as payloads", async (f) => {
    const s = f.store("values");
    const value = {
      n: 1.5,
      big: 2n ** 70n,
      bytes: new Uint8Array([0, 1, 255]),
      date: new Date(1_700_000_000_123),
      map: new Map<string, number>([["a", 1]]),
      set: new Set(["x"]),
      none: null,
      list: [1, "two", [3]],
      text: "héllo \u{1F600}",
    };
    await s.set("k", value);
    assert.deepEqual((await s.get("k"))?.value, value);
    for (const v of [null, 0, "", false, []]) {
      await s.set("scalar", v);
      assert.deepEqual((await s.get("scalar"))?.value, v);
    }
  });

  test("revisions increase strictly per key, also after a delete", async (f) => {
    const s = f.store("revs");
    const r1 = (await s.set("a", 1)).revision;
    const r2 = (await s.set("a", 2)).revision;
    await s.set("b", 1);
    assert.ok(r2 > r1);
    assert.equal(await s.delete("a"), true);
    const r3 = (await s.set("a", 3)).revision;
    assert.ok(r3 > r2, `revision ${r3} after delete must be above ${r2}`);
    assert.equal((await s.get("a"))?.revision, r3);
  });

  test("set() with ifRevision writes only on the current revision; 0 means must not exist", async (f) => {
    const s = f.store("cas");
    const { revision: r1 } = await s.set("k", "v1", { ifRevision: 0 });
    await rejectsWith(s.set("k", "again", { ifRevision: 0 }), "conflict", /expected no record/);
    const { revision: r2 } = await s.set("k", "v2", { ifRevision: r1 });
    await rejectsWith(
      s.set("k", "stale", { ifRevision: r1 }),
      "conflict",
      new RegExp(`expected revision ${r1}, the record is at revision ${r2}`),
    );
    await rejectsWith(s.set("missing", "x", { ifRevision: 1 }), "conflict", /there is none/);
    assert.deepEqual(await s.get("k"), { key: "k", value: "v2", revision: r2 });
    assert.equal(await s.get("missing"), undefined);
  });

  test("delete() says whether it deleted; ifRevision is checked", async (f) => {
    const s = f.store("del");
    assert.equal(await s.delete("nothing"), false);
    const { revision } = await s.set("k", 1);
    await rejectsWith(s.delete("k", { ifRevision: revision + 1 }), "conflict");
    await rejectsWith(s.delete("k", { ifRevision: 0 }), "conflict");
    assert.equal((await s.get("k"))?.value, 1);
    assert.equal(await s.delete("k", { ifRevision: revision }), true);
    assert.equal(await s.get("k"), undefined);
    assert.equal(await s.delete("k", { ifRevision: 0 }), false);
    await rejectsWith(s.delete("k", { ifRevision: revision }), "conflict");
  });

  test("a record with a ttl has expiresAt, and is never returned once expired", async (f) => {
    const s = f.store("ttl");
    const set = await s.set("k", "v", { ttl: 1000 });
    assert.equal(set.expiresAt, f.now + 1000);
    await s.set("other", "stays");
    assert.deepEqual(await s.get("k"), {
      key: "k",
      value: "v",
      revision: set.revision,
      expiresAt: f.now + 1000,
    });
    f.now += 999;
    assert.equal((await s.get("k"))?.value, "v");
    f.now += 1;
    assert.equal(await s.get("k"), undefined);
    assert.deepEqual(await keys(s.list()), ["other"]);
    // Expired is absent: a compare-and-set on its revision fails, one on 0 succeeds.
    await rejectsWith(s.set("k", "x", { ifRevision: set.revision }), "conflict");
    await rejectsWith(s.delete("k", { ifRevision: set.revision }), "conflict");
    assert.equal(await s.delete("k"), false);
    const again = await s.set("k", "new", { ifRevision: 0, ttl: 10 });
    assert.ok(again.revision > set.revision);
    // A write without ttl makes the record permanent.
    await s.set("k", "forever");
    f.now += 1_000_000;
    const forever = await s.get("k");
    assert.equal(forever?.value, "forever");
    assert.equal(forever?.expiresAt, undefined);
    assert.ok(forever.revision > again.revision);
  });

  test("purge() removes expired records of every store, at most `limit` at a time", async (f) => {
    const a = f.store("pa"), b = f.store("pb");
    await a.set("k0", "first");
    const { revision: old } = await a.set("k0", "second");
    for (let i = 0; i < 5; i++) await a.set(`k${i}`, i, { ttl: 100 });
    for (let i = 0; i < 3; i++) await b.set(`k${i}`, i, { ttl: 100 });
    await a.set("live", 1);
    await b.set("later", 1, { ttl: 10_000 });
    assert.equal(await f.backend.purge(f.now + 99, 100), 0, "nothing has expired yet");
    assert.equal(await f.backend.purge(f.now + 100, 6), 6);
    assert.equal(await f.backend.purge(f.now + 100, 100), 2);
    assert.equal(await f.backend.purge(f.now + 100, 100), 0);
    assert.deepEqual(await keys(a.list()), ["live"]);
    assert.deepEqual(await keys(b.list()), ["later"]);
    // Removed, not only hidden: at the fake clock's time (before their expiry) they are gone.
    assert.equal(await a.get("k0"), undefined);
    assert.equal(await b.get("k2"), undefined);
    assert.equal((await b.get("later"))?.value, 1);
    // A purged key written again gets a revision above every one it had.
    const again = await a.set("k0", "again", { ifRevision: 0 });
    assert.ok(again.revision > old + 1, `revision ${again.revision} after purge, had ${old + 1}`);
  });

  test("list() is ordered by code point and pages with after and limit", async (f) => {
    const s = f.store("order");
    const all = ["b", "a", "B", "aa", "a b", "\uFFFD", "\u{1F600}", "é", "z"];
    for (const k of all) await s.set(k, k);
    const sorted = ["B", "a", "a b", "aa", "b", "z", "é", "\uFFFD", "\u{1F600}"];
    assert.deepEqual(await keys(s.list()), sorted);
    assert.deepEqual(await keys(s.list({ limit: 3 })), sorted.slice(0, 3));
    assert.deepEqual(await keys(s.list({ after: "aa", limit: 2 })), ["b", "z"]);
    assert.deepEqual(await keys(s.list({ after: "\uFFFD" })), ["\u{1F600}"]);
    assert.deepEqual(await keys(s.list({ after: "zz" })), ["é", "\uFFFD", "\u{1F600}"]);
    const rec = (await Array.fromAsync(s.list({ prefix: "a b" })))[0];
    assert.deepEqual(rec, { key: "a b", value: "a b", revision: rec?.revision });
  });

  test("list() pages through many records, with the same result as one by one", async (f) => {
    const s = f.store("many");
    const expected: string[] = [];
    for (let i = 0; i < 450; i++) {
      const k = `k${String(i).padStart(4, "0")}`;
      expected.push(k);
      await s.set(k, i);
    }
    await s.set("other", 0);
    assert.deepEqual(await keys(s.list({ prefix: "k" })), expected);
    assert.deepEqual(await keys(s.list({ prefix: "k", limit: 1000 })), expected);
    const paged: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await keys(s.list({ prefix: "k", limit: 100, ...(after ? { after } : {}) }));
      paged.push(...page);
      if (page.length < 100) break;
      after = page[page.length - 1];
    }
    assert.deepEqual(paged, expected);
  });

  test("a prefix matches literally: % and _ are plain characters", async (f) => {
    const s = f.store("prefix");
    for (const k of ["a%b", "axb", "a_c", "abc", "a%", "a", "b", "a\\x", "a\u{10FFFF}z"]) {
      await s.set(k, 1);
    }
    assert.deepEqual(await keys(s.list({ prefix: "a%" })), ["a%", "a%b"]);
    assert.deepEqual(await keys(s.list({ prefix: "a_" })), ["a_c"]);
    assert.deepEqual(await keys(s.list({ prefix: "a\\" })), ["a\\x"]);
    assert.deepEqual(await keys(s.list({ prefix: "a\u{10FFFF}" })), ["a\u{10FFFF}z"]);
    assert.deepEqual(await keys(s.list({ prefix: "nope" })), []);
    assert.deepEqual(
      await keys(s.list({ prefix: "a" })),
      ["a", "a%", "a%b", "a\\x", "a_c", "abc", "axb", "a\u{10FFFF}z"],
    );
    // after below the prefix range starts at the prefix; after above it gives nothing.
    assert.deepEqual(await keys(s.list({ prefix: "a_", after: "" })), ["a_c"]);
    assert.deepEqual(await keys(s.list({ prefix: "a%", after: "a%" })), ["a%b"]);
    assert.deepEqual(await keys(s.list({ prefix: "a", after: "b" })), []);
  });

  test("stores are separate namespaces", async (f) => {
    const a = f.store("one"), b = f.store("two");
    await a.set("k", "in one");
    assert.equal(await b.get("k"), undefined);
    await b.set("k", "in two");
    assert.equal((await a.get("k"))?.value, "in one");
    assert.deepEqual(await keys(b.list()), ["k"]);
    assert.equal(await a.delete("k"), true);
    assert.equal((await b.get("k"))?.value, "in two");
  });

  test("of concurrent compare-and-set writes on one revision exactly one wins", async (f) => {
    const s = f.store("race");
    let { revision } = await s.set("k", "start");
    for (let round = 0; round < 5; round++) {
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => s.set("k", `${round}:${i}`, { ifRevision: revision })),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, `round ${round}: ${won.length} writers won`);
      for (const r of results) {
        if (r.status === "rejected") assert.equal((r.reason as ActorError).code, "conflict");
      }
      revision = (won[0] as PromiseFulfilledResult<{ revision: number }>).value.revision;
      assert.equal((await s.get("k"))?.revision, revision);
    }
    const created = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => s.set("new", i, { ifRevision: 0 })),
    );
    assert.equal(created.filter((r) => r.status === "fulfilled").length, 1);
  });

  test("bad names, keys, options and values are refused with clear errors", async (f) => {
    assert.throws(() => f.store("no spaces"), TypeError);
    assert.throws(() => f.store(""), /Store name must match/);
    assert.throws(() => f.store("x".repeat(65)), TypeError);
    const s = f.store("checks");
    await assert.rejects(s.get(""), /must not be empty/);
    await assert.rejects(s.set("x".repeat(513), 1), RangeError);
    await assert.rejects(s.set("é".repeat(257), 1), /at most 512 bytes in UTF-8, got 514/);
    await s.set("é".repeat(256), 1); // exactly 512 bytes
    await assert.rejects(s.set("\ud800", 1), /lone surrogate/);
    await assert.rejects(s.set("a\0b", 1), /NUL/);
    await assert.rejects(s.get(5 as unknown as string), /must be a string/);
    for (const ttl of [0, -1, NaN, Infinity]) {
      await assert.rejects(s.set("k", 1, { ttl }), /ttl .* must be a positive finite number/);
    }
    for (const ifRevision of [-1, 1.5]) {
      await assert.rejects(s.set("k", 1, { ifRevision }), /ifRevision .* non-negative integer/);
      await assert.rejects(s.delete("k", { ifRevision }), RangeError);
    }
    for (const limit of [0, 1001, 2.5]) {
      assert.throws(() => s.list({ limit }), /limit .* from 1 to 1000/);
    }
    await rejectsWith(s.set("big", new Uint8Array(64 * 1024)), "bad_payload", /exceeds the limit/);
    assert.equal(await s.get("k"), undefined);
    assert.equal(await s.get("big"), undefined);
  });
}
