/**
 * Streams both ways, the cases every mesh runs: a handler whose payload is an AsyncIterable
 * reads the caller's stream, with flow control (tests/duplex_test.ts, adapters/nats/duplex_test.ts).
 */
import assert from "node:assert/strict";
import { ActorError, defineActor, type System } from "../mod.ts";

export const produced = { count: 0, closed: 0 };

export const Room = defineActor({
  name: "room",
  initialState: () => ({ said: 0 }),
  handlers: {
    async *chat(ctx, input: AsyncIterable<string>) {
      for await (const m of input) {
        ctx.state.said++;
        yield m.toUpperCase();
      }
    },
    async upload(_ctx, chunks: AsyncIterable<Uint8Array>) {
      let n = 0;
      for await (const c of chunks) n += c.length;
      return n;
    },
    async firstTwo(_ctx, input: AsyncIterable<number>) {
      const got: number[] = [];
      for await (const v of input) {
        got.push(v);
        if (got.length === 2) break;
      }
      return got;
    },
    async fails(_ctx, input: AsyncIterable<number>) {
      for await (const v of input) if (v === 3) throw new ActorError("three", { code: "no_three" });
      return "never";
    },
    said: (ctx) => ctx.state.said,
  },
});

/** A source that counts what was pulled from it and whether it was closed. */
export async function* counted(n: number, delayMs = 0): AsyncGenerator<number> {
  try {
    for (let i = 0; i < n; i++) {
      produced.count++;
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      yield i;
    }
  } finally {
    produced.closed++;
  }
}

/** The duplex cases, for one caller and the room's host (same node or another). */
export async function duplexCases(caller: System, id: string): Promise<void> {
  const room = caller.ref(Room, id);
  // duplex: every item comes back transformed, in order
  const out: string[] = [];
  for await (const m of room.stream("chat", ["a", "b", "c"].values())) out.push(m);
  assert.deepEqual(out, ["A", "B", "C"]);
  // an async iterable works the same
  async function* words() {
    yield "x";
    yield "y";
  }
  const out2: string[] = [];
  for await (const m of room.stream("chat", words())) out2.push(m);
  assert.deepEqual(out2, ["X", "Y"]);
  assert.equal(await room.ask("said"), 5);
  // client stream: one reply
  function* chunks() {
    for (let i = 0; i < 100; i++) yield new Uint8Array(100);
  }
  assert.equal(await room.ask("upload", chunks()), 10_000);
  // flow control: the handler reads 2 of a million; the source is pulled only a window ahead
  // and is closed when the handler is done
  produced.count = 0;
  produced.closed = 0;
  assert.deepEqual(await room.ask("firstTwo", counted(1_000_000)), [0, 1]);
  const deadline = performance.now() + 2000;
  while (produced.closed === 0 && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(produced.closed, 1, "the source was closed");
  assert.ok(produced.count < 100, `pulled ${produced.count} items, not the million`);
  // the handler's error reaches the caller, and the source is closed
  produced.closed = 0;
  await assert.rejects(room.ask("fails", counted(1000)), { code: "no_three" });
  // the caller stops reading the duplex stream: the source is closed too
  produced.closed = 0;
  for await (
    const m of room.stream(
      "chat",
      (async function* () {
        try {
          for (let i = 0;; i++) yield `m${i}`;
        } finally {
          produced.closed++;
        }
      })(),
    )
  ) {
    if (m === "M3") break;
  }
  const until = performance.now() + 2000;
  while (produced.closed === 0 && performance.now() < until) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(produced.closed, 1, "cancelling the output closed the input");
  // the actor is free again
  assert.ok((await room.ask("said")) >= 9);
}
