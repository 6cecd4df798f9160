/**
 * How the main thread reaches one shard's database: a worker thread that owns a local file
 * (or `:memory:`), or, for a remote server, the engine on this thread with the asynchronous
 * `@libsql/client` (its calls are network requests: nothing blocks the event loop).
 *
 * @module
 */

import { createClient } from "@libsql/client/node";
import { clientExecutor } from "./_client.ts";
import {
  type BatchOutcome,
  Engine,
  type EngineError,
  isBusyCode,
  type Rows,
  toEngineError,
  type WriteBatch,
} from "./_engine.ts";
import type { Stmt } from "./_sql.ts";
import type { WorkerRequest, WorkerResponse } from "./_worker.ts";
import { type PointReader, pointReader } from "./_native.ts";

/** One shard's database, as the main thread uses it. Errors reject with {@link EngineError}s. */
export interface Connection {
  /** Commits a batch (see `Engine.batch`). */
  batch(batch: WriteBatch, timeoutMs: number): Promise<BatchOutcome>;
  /** Runs reads. */
  read(stmts: readonly Stmt[]): Promise<Rows[]>;
  /**
   * Runs one read by primary key (a few rows at most): on this thread where a local
   * database allows it (a lookup costs less than a message to the database thread, and never
   * waits behind a commit there), else like {@link read}.
   */
  readPoint(stmt: Stmt): Promise<Rows>;
  /** Runs writes in one transaction. */
  write(stmts: readonly Stmt[], timeoutMs: number): Promise<Rows[]>;
  /** Asks for a passive checkpoint off the commit path (local files only). */
  checkpoint(): void;
  /** Waits for what was sent, then releases the database and the threads. */
  close(): Promise<void>;
}

/** How to open a shard. */
export interface ConnectOptions {
  readonly url: string;
  readonly authToken?: string;
  readonly busyTimeoutMs: number;
  readonly synchronous: "full" | "normal";
  readonly openTimeoutMs: number;
  readonly shard?: { readonly index: number; readonly count: number };
  /** Run the engine on this thread with `@libsql/client`, also for a local file (tests). */
  readonly inThread?: boolean;
}

/** How long one try waits for a lock held elsewhere, blocking the worker thread, in ms. */
const BUSY_SLICE_MS = 20;

/** The path of a `file:` URL or `:memory:`; undefined for a remote URL. */
export function localPath(url: string): string | undefined {
  if (url === ":memory:" || /^file::memory:/.test(url)) return ":memory:";
  const m = /^file:(.*)$/i.exec(url);
  if (!m) return undefined;
  let path = m[1]!.replace(/\?.*$/, "");
  if (path.startsWith("//")) path = path.replace(/^\/\/[^/]*/, ""); // file://host/path
  return decodeURIComponent(path);
}

/** Opens a connection to one shard. */
export function connect(options: ConnectOptions): Connection {
  const path = localPath(options.url);
  if (path === undefined || options.inThread) return new InThread(options);
  return new InWorker(options, path);
}

class InWorker implements Connection {
  readonly #options: ConnectOptions;
  readonly #path: string;
  #worker: Worker | undefined;
  #ckpt: Worker | undefined;
  #ckptBusy = false;
  #next = 1;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();
  /** Threads that were terminated (nothing sent to them gets an answer). */
  readonly #dead = new WeakSet<Worker>();
  /** Threads that have not said they are ready yet. */
  readonly #ready = new Map<Worker, Promise<void>>();
  #opened: Promise<unknown> | undefined;
  #closing: Promise<void> | undefined;
  #reader: PointReader | undefined;

  constructor(options: ConnectOptions, path: string) {
    this.#options = options;
    this.#path = path;
  }

  #spawn(): Worker {
    const w = new Worker(new URL("./_worker_entry.js", import.meta.url), { type: "module" });
    const ready = Promise.withResolvers<void>();
    this.#ready.set(w, ready.promise);
    w.onmessage = (e: MessageEvent<WorkerResponse>) => {
      const r = e.data;
      if (r.id === 0) return ready.resolve(); // its handler is set: messages reach it now
      const p = this.#pending.get(r.id);
      if (!p) return;
      this.#pending.delete(r.id);
      if (r.ok) p.resolve(r.value);
      else p.reject(r.error);
    };
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      // The thread is gone: fail what waits on it; the next call starts a new one.
      const error: EngineError = {
        name: "Error",
        message: `the journal's database thread failed: ${e.message}`,
      };
      if (this.#worker === w) {
        this.#worker = undefined;
        this.#opened = undefined;
      }
      this.#terminate(w);
      ready.reject(error);
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
    };
    ready.promise.catch(() => {});
    return w;
  }

  async #send<T>(
    w: Worker,
    request: Omit<WorkerRequest, "id">,
    transfer: Transferable[] = [],
  ): Promise<T> {
    const ready = this.#ready.get(w);
    if (ready) {
      await ready;
      this.#ready.delete(w);
    }
    if (this.#dead.has(w)) throw closed(this.#options.url);
    const id = this.#next++;
    return await new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      w.postMessage({ ...request, id }, transfer);
    });
  }

  async #call<T>(request: Omit<WorkerRequest, "id">, transfer?: Transferable[]): Promise<T> {
    if (this.#closing) throw closed(this.#options.url);
    let w = this.#worker;
    if (!w) {
      w = this.#worker = this.#spawn();
      const memory = this.#path === ":memory:";
      this.#opened = this.#send(w, {
        op: "open",
        path: this.#path,
        url: this.#options.url,
        busySliceMs: Math.min(BUSY_SLICE_MS, this.#options.busyTimeoutMs),
        synchronous: this.#options.synchronous,
        openTimeoutMs: this.#options.openTimeoutMs,
        checkpointElsewhere: !memory,
        ...(this.#options.shard ? { shard: this.#options.shard } : {}),
      } as Omit<WorkerRequest, "id">);
      this.#opened.catch(() => {
        // Opening failed: the next call tries again with a new thread.
        if (this.#worker === w) this.#worker = undefined;
        this.#terminate(w!);
      });
    }
    await this.#opened;
    return await this.#send<T>(w, request, transfer);
  }

  batch(batch: WriteBatch, timeoutMs: number): Promise<BatchOutcome> {
    // The encoded groups move to the thread (no copy).
    return this.#call(
      { op: "batch", batch, timeoutMs } as Omit<WorkerRequest, "id">,
      [batch.groups.buffer as ArrayBuffer],
    );
  }

  read(stmts: readonly Stmt[]): Promise<Rows[]> {
    return this.#call({ op: "read", stmts } as Omit<WorkerRequest, "id">);
  }

  async readPoint(stmt: Stmt): Promise<Rows> {
    if (this.#path !== ":memory:" && !this.#closing) {
      if (!this.#reader) await this.#call({ op: "read", stmts: [] } as Omit<WorkerRequest, "id">);
      try {
        // Opened once the database thread has the schema in place; WAL readers never wait
        // for writers, and a busy read (rare: a WAL being reset) falls back to the thread.
        this.#reader ??= pointReader(this.#path);
        return this.#reader.read(stmt);
      } catch {
        // below
      }
    }
    return (await this.read([stmt]))[0]!;
  }

  write(stmts: readonly Stmt[], timeoutMs: number): Promise<Rows[]> {
    return this.#call({ op: "write", stmts, timeoutMs } as Omit<WorkerRequest, "id">);
  }

  checkpoint(): void {
    if (this.#path === ":memory:" || this.#ckptBusy || this.#closing) return;
    this.#ckptBusy = true;
    (async () => {
      let c = this.#ckpt;
      if (!c) {
        // Started on the first commits: a journal that writes little never starts it.
        c = this.#ckpt = this.#spawn();
        await this.#send(c, { op: "checkpointer", path: this.#path } as Omit<WorkerRequest, "id">);
      }
      await this.#send(c, { op: "checkpoint" } as Omit<WorkerRequest, "id">);
    })()
      .catch(() => {}) // best effort: the next one catches up
      .finally(() => this.#ckptBusy = false);
  }

  #terminate(w: Worker): void {
    this.#dead.add(w);
    w.terminate();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#opened?.catch(() => {});
      const w = this.#worker;
      const c = this.#ckpt;
      this.#worker = undefined;
      this.#ckpt = undefined;
      for (const t of [c, w]) {
        if (!t) continue;
        await this.#send(t, { op: "close" } as Omit<WorkerRequest, "id">).catch(() => {});
        this.#terminate(t);
      }
      for (const p of this.#pending.values()) p.reject(closed(this.#options.url));
      this.#pending.clear();
      this.#reader?.close();
      this.#reader = undefined;
    })();
    return this.#closing;
  }
}

function closed(url: string): EngineError {
  return { name: "Error", message: `the journal database ${url} is closed`, code: "CLOSED" };
}

class InThread implements Connection {
  readonly #options: ConnectOptions;
  #engine: Promise<Engine> | undefined;
  #closed = false;
  /** Writes, one after the other (like the worker). */
  #writes: Promise<unknown> = Promise.resolve();

  constructor(options: ConnectOptions) {
    this.#options = options;
  }

  #ready(): Promise<Engine> {
    if (this.#closed) return Promise.reject(closed(this.#options.url));
    this.#engine ??= this.#open().catch((err) => {
      this.#engine = undefined;
      throw toEngineError(err);
    });
    return this.#engine;
  }

  async #open(): Promise<Engine> {
    const o = this.#options;
    const deadline = performance.now() + o.openTimeoutMs;
    for (let attempt = 0;; attempt++) {
      const client = createClient({
        url: o.url,
        intMode: "number",
        ...(o.authToken === undefined ? {} : { authToken: o.authToken }),
        ...(localPath(o.url) !== undefined ? { concurrency: 1, timeout: o.busyTimeoutMs } : {}),
      });
      const engine = new Engine(clientExecutor(client), {
        url: o.url,
        ...(o.shard ? { shard: o.shard } : {}),
      });
      try {
        const path = localPath(o.url);
        if (path !== undefined && path !== ":memory:") {
          await client.execute("PRAGMA journal_mode = WAL");
          await client.execute(`PRAGMA synchronous = ${o.synchronous}`);
        }
        await engine.open();
        return engine;
      } catch (err) {
        engine.close();
        if (!isBusyCode(toEngineError(err).code) || performance.now() >= deadline) throw err;
        const backoff = Math.min(1000, 10 * 2 ** attempt) * (0.5 + Math.random());
        await new Promise((r) => setTimeout(r, Math.min(backoff, deadline - performance.now())));
      }
    }
  }

  #serial<T>(fn: (e: Engine) => Promise<T>): Promise<T> {
    const p = this.#writes.then(() => this.#ready()).then(fn).catch((err) => {
      throw toEngineError(err);
    });
    this.#writes = p.catch(() => {});
    return p;
  }

  batch(batch: WriteBatch, timeoutMs: number): Promise<BatchOutcome> {
    return this.#serial((e) => e.batch(batch, timeoutMs));
  }

  write(stmts: readonly Stmt[], timeoutMs: number): Promise<Rows[]> {
    return this.#serial((e) => e.write(stmts, timeoutMs));
  }

  async read(stmts: readonly Stmt[]): Promise<Rows[]> {
    try {
      return await (await this.#ready()).read(stmts);
    } catch (err) {
      throw toEngineError(err);
    }
  }

  async readPoint(stmt: Stmt): Promise<Rows> {
    return (await this.read([stmt]))[0]!;
  }

  checkpoint(): void {}

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writes;
    const engine = await this.#engine?.catch(() => undefined);
    engine?.close();
  }
}
