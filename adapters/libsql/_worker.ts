/**
 * The worker thread of one local journal shard: it owns the database connection, so no
 * SQLite call (a commit's fsync, a wait for a lock held by another process, preparing a
 * statement) ever runs on the main thread. Writes run one batch at a time, in the order they
 * arrive; reads run between them (also while a write waits for a lock held elsewhere), never
 * inside a write's transaction: the thread takes messages between the steps of a transaction,
 * so the executor holds them until it ends (`nativeExecutor`).
 *
 * A second instance in checkpoint mode owns another connection and runs passive checkpoints
 * when asked, so that no commit runs one.
 *
 * Protocol: `{ id, op, … }` in, `{ id, ok: true, value }` or `{ id, ok: false, error }` out.
 *
 * @module
 */

import { Engine, type EngineError, isBusyCode, toEngineError } from "./_engine.ts";
import { checkpointer, nativeExecutor } from "./_native.ts";

/** The messages a shard worker takes. */
export type WorkerRequest =
  | {
    readonly id: number;
    readonly op: "open";
    readonly path: string;
    readonly url: string;
    readonly busySliceMs: number;
    readonly synchronous: "full" | "normal";
    readonly openTimeoutMs: number;
    readonly checkpointElsewhere: boolean;
    readonly shard?: { readonly index: number; readonly count: number };
  }
  | {
    readonly id: number;
    readonly op: "batch";
    readonly batch: unknown;
    readonly timeoutMs: number;
  }
  | { readonly id: number; readonly op: "read"; readonly stmts: unknown }
  | {
    readonly id: number;
    readonly op: "write";
    readonly stmts: unknown;
    readonly timeoutMs: number;
  }
  | { readonly id: number; readonly op: "checkpointer"; readonly path: string }
  | { readonly id: number; readonly op: "checkpoint" }
  | { readonly id: number; readonly op: "close" };

/** What a shard worker answers. */
export type WorkerResponse =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: EngineError };

interface Scope {
  onmessage: ((e: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerResponse): void;
  close(): void;
}

const scope = globalThis as unknown as Scope;
let engine: Engine | undefined;
let ckpt: ReturnType<typeof checkpointer> | undefined;
/** Writes, one after the other. */
let writes: Promise<unknown> = Promise.resolve();

function reply(id: number, p: Promise<unknown>): void {
  p.then(
    (value) => scope.postMessage({ id, ok: true, value }),
    (err) => scope.postMessage({ id, ok: false, error: toEngineError(err) }),
  );
}

function serial<T>(fn: () => Promise<T>): Promise<T> {
  const p = writes.then(fn);
  writes = p.catch(() => {});
  return p;
}

function ready(): Engine {
  if (!engine) throw Object.assign(new Error("the journal database is closed"), { code: "CLOSED" });
  return engine;
}

async function open(r: Extract<WorkerRequest, { op: "open" }>): Promise<void> {
  const deadline = performance.now() + r.openTimeoutMs;
  for (let attempt = 0;; attempt++) {
    let e: Engine | undefined;
    try {
      const exec = nativeExecutor({
        path: r.path,
        busySliceMs: r.busySliceMs,
        synchronous: r.synchronous,
        checkpointElsewhere: r.checkpointElsewhere,
      });
      e = new Engine(exec, { url: r.url, ...(r.shard ? { shard: r.shard } : {}) });
      await e.open();
      engine = e;
      return;
    } catch (err) {
      try {
        e?.close();
      } catch {
        // it did not open
      }
      // Several processes opening one file at once: switching to WAL or creating the schema
      // can fail with a busy error at once (the busy timeout does not cover every lock).
      if (!isBusyCode(toEngineError(err).code) || performance.now() >= deadline) throw err;
      const backoff = Math.min(1000, 10 * 2 ** attempt) * (0.5 + Math.random());
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(backoff, deadline - performance.now()))
      );
    }
  }
}

scope.onmessage = (e: MessageEvent<WorkerRequest>) => {
  handle(e.data);
};
// Messages sent before a handler was set could be lost: the main thread waits for this first.
scope.postMessage({ id: 0, ok: true, value: "ready" });

function handle(r: WorkerRequest): void {
  switch (r.op) {
    case "open":
      return reply(r.id, serial(() => open(r)));
    case "batch":
      return reply(r.id, serial(() => ready().batch(r.batch as never, r.timeoutMs)));
    case "write":
      return reply(r.id, serial(() => ready().write(r.stmts as never, r.timeoutMs)));
    case "read":
      return reply(r.id, Promise.resolve().then(() => ready().read(r.stmts as never)));
    case "checkpointer":
      return reply(r.id, Promise.resolve().then(() => void (ckpt = checkpointer(r.path))));
    case "checkpoint":
      return reply(r.id, Promise.resolve().then(() => ckpt?.run()));
    case "close":
      return reply(
        r.id,
        serial(async () => {
          // A file at rest has every head in its row (else the next writer catches them up).
          await engine?.flush();
          engine?.close();
          engine = undefined;
          ckpt?.close();
          ckpt = undefined;
        }),
      );
  }
}
