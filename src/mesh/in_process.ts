/**
 * The in-process mesh: a real implementation of the {@link Mesh} port in memory, used when
 * every node runs in one process (the default of `createSystem`, and tests that form a
 * cluster of several systems in one process).
 *
 * One {@link inProcessMesh} value is one cluster: every `connect()` on it is another node
 * sharing the same subjects and key-value buckets.
 *
 * Differences from NATS worth knowing:
 * - message bodies are not copied: the `Uint8Array` given to `publish` is handed to every
 *   subscriber as it is (do not mutate it after publishing); headers are copied;
 * - KV values are copied on write and on read;
 * - `onStatus` never reports disconnects or reconnects (there is no network); it reports
 *   `{ type: "error" }` when a subscription handler throws (without a listener, the error is
 *   logged with `console.error`);
 * - KV `history` is accepted but only the latest revision of a key is kept;
 * - a bucket's `createdAt` is the mesh clock's `now()` at creation, made strictly larger than
 *   that of an earlier incarnation of the same name;
 * - request timeouts run on the connecting node's clock (`connect({ clock })`, which
 *   `createSystem` passes), else on the mesh's;
 * - `maxPayload` counts the body plus the headers as NATS encodes them (string lengths);
 * - durable topics (`durableTopics()`) are kept in memory for as long as the mesh value lives,
 *   within the limits of the `durable` option, and time them with the mesh's clock.
 *
 * @example
 * ```ts
 * import { inProcessMesh } from "./in_process.ts";
 *
 * const mesh = inProcessMesh();
 * const a = await mesh.connect({ node: "a" });
 * const b = await mesh.connect({ node: "b" });
 * b.subscribe("troupe.echo", (msg) => b.publish(msg.reply!, msg.data));
 * const reply = await a.request("troupe.echo", new Uint8Array([1]), { timeout: 1000 });
 * console.log(reply.data); // Uint8Array [ 1 ]
 * await a.close();
 * await b.close();
 * ```
 *
 * @module
 */

import { isValidSubject, subjectMatches } from "./subject.ts";
import {
  DurableStore,
  type InProcessDurableOptions,
  InProcessDurableTopics,
} from "./in_process_durable.ts";
import { createEventQueue } from "../util/queue.ts";
import { inMacrotask, loopStarved } from "../util/loop.ts";
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import {
  type DurableTopics,
  type KvBucket,
  type KvEntry,
  type KvIncarnation,
  type KvOptions,
  type KvWatch,
  type Mesh,
  type MeshConnection,
  MeshError,
  type MeshHeaders,
  type MeshMessage,
  type MeshStatus,
  type MeshSubscription,
  type PublishOptions,
  type RequestHandle,
  type RequestOptions,
  type SubscribeOptions,
} from "./types.ts";

/**
 * Options of {@link inProcessMesh}.
 *
 * @example
 * ```ts
 * import { inProcessMesh, type InProcessMeshOptions } from "./in_process.ts";
 *
 * const options: InProcessMeshOptions = { leaseTtl: 500, maxPayload: 64 * 1024 };
 * const mesh = inProcessMesh(options);
 * ```
 */
export interface InProcessMeshOptions {
  /** Default lease time-to-live for membership and ownership, in ms. @default {5000} */
  leaseTtl?: number;
  /** First token of every Troupe subject and of bucket names. @default {"troupe"} */
  prefix?: string;
  /** Largest message (body plus headers) carried, in bytes. @default {1048576} */
  maxPayload?: number;
  /**
   * The mesh's own clock: buckets' creation times, and request timeouts of connections made
   * without a clock of their own. @default {systemClock}
   */
  clock?: Clock;
  /**
   * Limits of the durable topics' store (`publish(…, { durable: true })`), kept in memory for
   * as long as this mesh value lives. @default {{}} (see {@link InProcessDurableOptions})
   */
  durable?: InProcessDurableOptions;
}

export type { InProcessDurableOptions };

/**
 * Makes an in-process mesh: one cluster whose nodes are the connections made on it.
 *
 * @example
 * ```ts
 * import { inProcessMesh } from "./in_process.ts";
 *
 * const mesh = inProcessMesh({ leaseTtl: 1000 });
 * const conn = await mesh.connect({ node: "n1" });
 * const kv = await conn.kv("troupe_members");
 * await kv.put("n1", new TextEncoder().encode("alive"));
 * await conn.close();
 * ```
 */
export function inProcessMesh(options: InProcessMeshOptions = {}): Mesh {
  const leaseTtl = options.leaseTtl ?? 5000;
  const prefix = options.prefix ?? "troupe";
  const maxPayload = options.maxPayload ?? 1024 * 1024;
  if (!(leaseTtl > 0)) throw new RangeError(`Cannot use leaseTtl ${leaseTtl}: must be > 0`);
  if (!(maxPayload > 0)) throw new RangeError(`Cannot use maxPayload ${maxPayload}: must be > 0`);
  if (!/^[A-Za-z0-9_-]+$/.test(prefix)) {
    throw new TypeError(`Cannot use prefix "${prefix}": must match [A-Za-z0-9_-]+`);
  }
  const clock = options.clock ?? systemClock;
  const cluster = new Cluster(maxPayload, clock);
  // cheap until used (no timer runs while nobody consumes); made now so bad limits throw here
  cluster.store = new DurableStore(
    { prefix, route: (m) => cluster.route(m), clock },
    options.durable,
  );
  return {
    kind: "in-process",
    leaseTtl,
    prefix,
    connect({ node, signal, clock: own }) {
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (typeof node !== "string" || node.length === 0) {
        return Promise.reject(new TypeError(`Cannot connect node "${node}": empty id`));
      }
      return Promise.resolve(new InProcessConnection(cluster, node, own ?? clock));
    },
  };
}

// ---------------------------------------------------------------------------------------
// Scheduling: one microtask drain per subscription; after a long burst of purely in-memory
// traffic (the event loop has not turned for `STARVED_MS`), through a macrotask, so that timers
// (heartbeats, deadlines) and I/O still run (`src/util/loop.ts`, shared with the turn loop).

/** Messages one drain handles before it yields. */
const DRAIN_BATCH = 1000;

function schedule(fn: () => void): void {
  if (loopStarved()) inMacrotask(fn);
  else queueMicrotask(fn);
}

// ---------------------------------------------------------------------------------------
// Routing: a token trie (like the NATS sublist) plus a cache of literal subject → result.

const EMPTY_HEADERS: MeshHeaders = Object.freeze({}) as MeshHeaders;
const CACHE_MAX = 4096;
const INBOX = "_INBOX";

interface TrieNode {
  readonly next: Map<string, TrieNode>;
  star: TrieNode | undefined;
  readonly gt: Set<Sub>;
  readonly subs: Set<Sub>;
}

function trieNode(): TrieNode {
  return { next: new Map(), star: undefined, gt: new Set(), subs: new Set() };
}

interface MatchResult {
  readonly plain: Sub[];
  readonly groups: Sub[][];
}

class Cluster {
  readonly root: TrieNode = trieNode();
  readonly cache = new Map<string, MatchResult>();
  readonly buckets = new Map<string, BucketState>();
  /** The durable topics' store (set by `inProcessMesh`). */
  store!: DurableStore;
  /** The `createdAt` of the latest incarnation of each bucket name. */
  readonly #created = new Map<string, number>();
  constructor(readonly maxPayload: number, readonly clock: Clock) {}

  add(sub: Sub): void {
    const tokens = sub.subject.split(".");
    let node = this.root;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (t === ">") {
        node.gt.add(sub);
        this.cache.clear();
        return;
      }
      if (t === "*") node = node.star ??= trieNode();
      else {
        let n = node.next.get(t);
        if (!n) node.next.set(t, n = trieNode());
        node = n;
      }
    }
    node.subs.add(sub);
    this.cache.clear();
  }

  remove(sub: Sub): void {
    const tokens = sub.subject.split(".");
    const path: [TrieNode, string][] = [];
    let node: TrieNode | undefined = this.root;
    for (const t of tokens) {
      if (t === ">") {
        node.gt.delete(sub);
        break;
      }
      path.push([node, t]);
      node = t === "*" ? node.star : node.next.get(t);
      if (!node) return;
    }
    if (tokens[tokens.length - 1] !== ">") node.subs.delete(sub);
    this.cache.clear();
    // Prune empty nodes so that the trie does not grow with churn (inboxes, activations).
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, t] = path[i]!;
      const child = t === "*" ? parent.star : parent.next.get(t);
      if (!child || !isEmpty(child)) break;
      if (t === "*") parent.star = undefined;
      else parent.next.delete(t);
    }
  }

  match(subject: string): MatchResult {
    const cached = this.cache.get(subject);
    if (cached) return cached;
    const found: Sub[] = [];
    collect(this.root, subject.split("."), 0, found);
    const plain: Sub[] = [];
    const byQueue = new Map<string, Sub[]>();
    for (const s of found) {
      if (s.queue === undefined) plain.push(s);
      else {
        const g = byQueue.get(s.queue);
        if (g) g.push(s);
        else byQueue.set(s.queue, [s]);
      }
    }
    const result: MatchResult = { plain, groups: [...byQueue.values()] };
    // Unique inbox subjects would only churn the cache.
    if (!subject.startsWith(INBOX)) {
      if (this.cache.size >= CACHE_MAX) this.cache.clear();
      this.cache.set(subject, result);
    }
    return result;
  }

  /** Hands `msg` to every matching subscription; returns how many got it. */
  route(msg: MeshMessage): number {
    const { plain, groups } = this.match(msg.subject);
    for (let i = 0; i < plain.length; i++) plain[i]!.enqueue(msg);
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      g[g.length === 1 ? 0 : Math.floor(Math.random() * g.length)]!.enqueue(msg);
    }
    return plain.length + groups.length;
  }

  bucket(name: string): BucketState {
    let b = this.buckets.get(name);
    if (!b) {
      const createdAt = Math.max(this.clock.now(), (this.#created.get(name) ?? 0) + 1);
      this.#created.set(name, createdAt);
      this.buckets.set(name, b = new BucketState(name, createdAt));
    }
    return b;
  }

  /** Deletes bucket `name`: its watches end; handles see a later bucket of that name. */
  deleteBucket(name: string): void {
    const b = this.buckets.get(name);
    if (!b) return;
    this.buckets.delete(name);
    for (const w of [...b.watchers]) w.stop();
  }
}

function isEmpty(n: TrieNode): boolean {
  return n.subs.size === 0 && n.gt.size === 0 && n.next.size === 0 && n.star === undefined;
}

function collect(node: TrieNode, tokens: string[], i: number, out: Sub[]): void {
  if (node.gt.size > 0 && i < tokens.length) { for (const s of node.gt) out.push(s); }
  if (i === tokens.length) {
    for (const s of node.subs) out.push(s);
    return;
  }
  const n = node.next.get(tokens[i]!);
  if (n) collect(n, tokens, i + 1, out);
  if (node.star) collect(node.star, tokens, i + 1, out);
}

// ---------------------------------------------------------------------------------------
// Subscriptions.

class Sub implements MeshSubscription {
  #queue: (MeshMessage | undefined)[] = [];
  #head = 0;
  #scheduled = false;
  #dead = false;
  #drained: (() => void) | undefined;

  constructor(
    readonly conn: InProcessConnection,
    readonly subject: string,
    readonly queue: string | undefined,
    readonly handler: (msg: MeshMessage) => void,
  ) {}

  enqueue(msg: MeshMessage): void {
    if (this.#dead) return;
    this.#queue.push(msg);
    if (!this.#scheduled) {
      this.#scheduled = true;
      schedule(this.#drain);
    }
  }

  #drain = (): void => {
    let n = 0;
    while (this.#head < this.#queue.length && !this.#dead) {
      if (n++ === DRAIN_BATCH) {
        schedule(this.#drain);
        return;
      }
      const msg = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined;
      try {
        this.handler(msg);
      } catch (error) {
        this.conn.report(error);
      }
    }
    this.#queue = [];
    this.#head = 0;
    this.#scheduled = false;
    const done = this.#drained;
    this.#drained = undefined;
    done?.();
  };

  unsubscribe(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#queue = [];
    this.#head = 0;
    this.conn.forget(this);
  }

  /** Stops new messages, handles the queued ones, then resolves. */
  drain(): Promise<void> {
    if (this.#dead) return Promise.resolve();
    this.conn.cluster.remove(this);
    const p = this.#scheduled ? new Promise<void>((r) => this.#drained = r) : Promise.resolve();
    return p.then(() => {
      this.#dead = true;
      this.conn.forget(this); // the connection no longer holds it
    });
  }
}

// ---------------------------------------------------------------------------------------
// Connections.

let connCounter = 0;

interface Pending {
  resolve(msg: MeshMessage): void;
  reject(error: unknown): void;
  timer: TimerId;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  handle?: RequestHandle;
}

function randomId(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 16);
}

function headerSize(headers: MeshHeaders): number {
  let size = 0;
  for (const k in headers) size += k.length + headers[k]!.length + 4;
  return size === 0 ? 0 : size + 12;
}

/** A node's connection to an in-process mesh. See {@link inProcessMesh}. */
class InProcessConnection implements MeshConnection {
  readonly maxPayload: number;
  readonly #id: string;
  readonly #subs = new Set<Sub>();
  readonly #pending = new Map<string, Pending>();
  readonly #listeners = new Set<(status: MeshStatus) => void>();
  readonly #watches = new Set<WatchImpl>();
  #durable: InProcessDurableTopics | undefined;
  readonly #muxPrefix: string;
  #mux: Sub | undefined;
  #reqCounter = 0;
  #inboxCounter = 0;
  #state: "open" | "draining" | "closed" = "open";
  #closing: Promise<void> | undefined;

  constructor(readonly cluster: Cluster, readonly node: string, readonly clock: Clock) {
    this.maxPayload = cluster.maxPayload;
    this.#id = `${randomId()}${(++connCounter).toString(36)}`;
    this.#muxPrefix = `${INBOX}.${this.#id}.`;
  }

  #open(): void {
    if (this.#state === "closed") {
      throw new MeshError(
        "closed",
        `Cannot use the mesh connection of node "${this.node}": closed`,
      );
    }
  }

  #openForNew(): void {
    if (this.#state !== "open") {
      throw new MeshError(
        "closed",
        `Cannot use the mesh connection of node "${this.node}": closed`,
      );
    }
  }

  #message(subject: string, data: Uint8Array, headers?: MeshHeaders, reply?: string) {
    if (!isValidSubject(subject)) {
      throw new TypeError(`Cannot publish to subject "${subject}": invalid subject`);
    }
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(`Cannot publish to "${subject}": data must be a Uint8Array`);
    }
    let h = EMPTY_HEADERS;
    let size = data.byteLength;
    if (headers) {
      for (const _ in headers) {
        h = { ...headers };
        size += headerSize(h);
        break;
      }
    }
    if (size > this.maxPayload) {
      throw new MeshError(
        "max_payload",
        `Cannot publish ${size} bytes to "${subject}": larger than maxPayload ${this.maxPayload}`,
      );
    }
    const msg: MeshMessage = reply === undefined
      ? { subject, headers: h, data }
      : { subject, headers: h, data, reply };
    return msg;
  }

  publish(subject: string, data: Uint8Array, options?: PublishOptions): void {
    this.#open();
    this.cluster.route(this.#message(subject, data, options?.headers, options?.reply));
  }

  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<MeshMessage> {
    try {
      this.#openForNew();
      const { signal, timeout } = options;
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (!(timeout >= 0)) throw new RangeError(`Cannot request with timeout ${timeout}`);
      const token = (++this.#reqCounter).toString(36);
      const msg = this.#message(subject, data, options.headers, this.#muxPrefix + token);
      this.#mux ??= this.#subscribe(this.#muxPrefix + "*", undefined, this.#onReply);
      if (this.cluster.route(msg) === 0) {
        throw new MeshError("no_responders", `No responders for request to "${subject}"`);
      }
      return new Promise<MeshMessage>((resolve, reject) => {
        const p: Pending = {
          resolve,
          reject,
          signal,
          onAbort: undefined,
          timer: this.clock.setTimeout(() => {
            this.#settle(token);
            reject(
              new MeshError("timeout", `Request to "${subject}" timed out after ${timeout} ms`),
            );
          }, timeout),
        };
        if (signal) {
          p.onAbort = () => {
            this.#settle(token);
            reject(signal.reason);
          };
          signal.addEventListener("abort", p.onAbort, { once: true });
        }
        const handle = options.handle;
        if (handle) {
          p.handle = handle;
          handle.cancel = (reason) => {
            if (this.#settle(token)) reject(reason);
          };
        }
        this.#pending.set(token, p);
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #settle(token: string): Pending | undefined {
    const p = this.#pending.get(token);
    if (!p) return undefined;
    this.#pending.delete(token);
    this.clock.clearTimeout(p.timer);
    if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
    if (p.handle) p.handle.cancel = undefined;
    return p;
  }

  #onReply = (msg: MeshMessage): void => {
    const p = this.#settle(msg.subject.slice(this.#muxPrefix.length));
    p?.resolve(msg);
  };

  subscribe(
    subject: string,
    handler: (msg: MeshMessage) => void,
    options?: SubscribeOptions,
  ): MeshSubscription {
    this.#openForNew();
    if (!isValidSubject(subject, true)) {
      throw new TypeError(`Cannot subscribe to subject "${subject}": invalid subject`);
    }
    const queue = options?.queue;
    if (queue !== undefined && (queue.length === 0 || /[\s.*>]/.test(queue))) {
      throw new TypeError(`Cannot subscribe with queue group "${queue}": invalid name`);
    }
    return this.#subscribe(subject, queue, handler);
  }

  #subscribe(subject: string, queue: string | undefined, handler: (m: MeshMessage) => void) {
    const sub = new Sub(this, subject, queue, handler);
    this.#subs.add(sub);
    this.cluster.add(sub);
    return sub;
  }

  /** Called by {@link Sub.unsubscribe}. */
  forget(sub: Sub): void {
    if (this.#subs.delete(sub)) this.cluster.remove(sub);
  }

  /** Reports an error thrown by a subscription handler. */
  report(error: unknown): void {
    if (this.#listeners.size === 0) {
      console.error(`Subscription handler of node "${this.node}" threw:`, error);
      return;
    }
    for (const l of this.#listeners) {
      try {
        l({ type: "error", error });
      } catch { /* a listener's own failure must not stop delivery */ }
    }
  }

  inbox(): string {
    this.#open();
    return `${INBOX}.${this.#id}_${(++this.#inboxCounter).toString(36)}`;
  }

  flush(): Promise<void> {
    try {
      this.#open();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  kv(bucket: string, options?: KvOptions): Promise<KvBucket> {
    try {
      this.#openForNew();
      if (!/^[A-Za-z0-9_-]+$/.test(bucket)) {
        throw new TypeError(`Cannot open bucket "${bucket}": name must match [A-Za-z0-9_-]+`);
      }
      const history = options?.history ?? 1;
      if (!(history >= 1 && history <= 64)) {
        throw new RangeError(`Cannot open bucket "${bucket}" with history ${history}`);
      }
      return Promise.resolve(new BucketHandle(this, this.cluster.bucket(bucket)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  deleteKv(bucket: string): Promise<void> {
    try {
      this.#openForNew();
      if (!/^[A-Za-z0-9_-]+$/.test(bucket)) {
        throw new TypeError(`Cannot delete bucket "${bucket}": name must match [A-Za-z0-9_-]+`);
      }
      this.cluster.deleteBucket(bucket);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  durableTopics(): DurableTopics {
    this.#open();
    return this.#durable ??= new InProcessDurableTopics(
      this.cluster.store,
      () => this.#openForNew(),
      (subject, data, headers) => this.#message(subject, data, headers),
      (err) => this.report(err),
    );
  }

  /** Throws `MeshError("closed")` once closed; used by bucket handles. */
  check(): void {
    this.#openForNew();
  }

  /** Registers a watch so that closing the connection ends it. */
  track(watch: WatchImpl, add: boolean): void {
    if (add) this.#watches.add(watch);
    else this.#watches.delete(watch);
  }

  onStatus(listener: (status: MeshStatus) => void): () => void {
    this.#open();
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    this.#state = "draining";
    for (const w of [...this.#watches]) w.stop();
    this.#durable?.close();
    const mux = this.#mux;
    const user = [...this.#subs].filter((s) => s !== mux);
    // Like a NATS drain: no new messages, queued ones are handled (their replies may still
    // be published), then the connection closes.
    await Promise.all(user.map((s) => s.drain()));
    this.#state = "closed";
    for (const s of [...this.#subs]) s.unsubscribe();
    for (const s of this.#subs) this.cluster.remove(s);
    this.#subs.clear();
    for (const token of [...this.#pending.keys()]) {
      this.#settle(token)?.reject(
        new MeshError("closed", `Request of node "${this.node}" failed: connection closed`),
      );
    }
    this.#listeners.clear();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

// ---------------------------------------------------------------------------------------
// Key-value buckets. All operations run synchronously on the shared state, so every write
// is strictly serialized: compare-and-set never races.

const KEY_TOKEN = /^[A-Za-z0-9_=-]+$/;

function checkKey(key: string): void {
  if (typeof key !== "string" || !key.split(".").every((t) => KEY_TOKEN.test(t))) {
    throw new TypeError(`Cannot use KV key "${key}": tokens must match [A-Za-z0-9_=-]+`);
  }
}

function checkFilter(filter: string): void {
  if (!isValidSubject(filter, true)) {
    throw new TypeError(`Cannot use KV key filter "${filter}": invalid pattern`);
  }
}

class BucketState {
  readonly incarnation = crypto.randomUUID();
  readonly entries = new Map<string, KvEntry>();
  readonly watchers = new Set<WatchImpl>();
  revision = 0;
  constructor(readonly name: string, readonly createdAt: number) {}

  write(key: string, value: Uint8Array, operation: KvEntry["operation"]): number {
    const entry: KvEntry = {
      key,
      value: operation === "PUT" ? value.slice() : new Uint8Array(0),
      revision: ++this.revision,
      operation,
    };
    const before = this.entries.get(key);
    if (before?.operation !== "PUT" && before !== undefined) this.#markers--;
    this.entries.set(key, entry);
    if (operation !== "PUT") this.#markers++;
    for (const w of this.watchers) w.offer(entry);
    if (this.#markers > MARKERS_KEPT && this.#markers * 2 > this.entries.size) this.#compact();
    return entry.revision;
  }

  /** Delete markers held now. */
  #markers = 0;

  /**
   * Forgets delete markers older than the last {@link MARKERS_KEPT} revisions, as NATS's
   * `purgeDeletes` does: a bucket whose keys come and go (actor ownership) stays bounded.
   */
  #compact(): void {
    const oldest = this.revision - MARKERS_KEPT;
    for (const [k, e] of this.entries) {
      if (e.operation !== "PUT" && e.revision < oldest) {
        this.entries.delete(k);
        this.#markers--;
      }
    }
  }
}

/** Delete markers a bucket keeps at least (see `BucketState.#compact`). */
const MARKERS_KEPT = 1000;

function copyEntry(e: KvEntry): KvEntry {
  return { key: e.key, value: e.value.slice(), revision: e.revision, operation: e.operation };
}

function conflict(bucket: string, key: string, what: string): MeshError {
  return new MeshError("kv_conflict", `Cannot write "${key}" in bucket "${bucket}": ${what}`);
}

/**
 * A bucket opened by a connection. Like a NATS KV handle it names the bucket, not one
 * incarnation of it: after the bucket is deleted its calls fail, and once a bucket of that
 * name is created again they use it.
 */
class BucketHandle implements KvBucket {
  readonly name: string;
  readonly incarnation: string;
  /** Writes run one at a time on shared state: always serialized. */
  readonly serializedCas = true;
  constructor(readonly conn: InProcessConnection, state: BucketState) {
    this.name = state.name;
    this.incarnation = state.incarnation;
  }

  /** The bucket's current state (throws `MeshError("no_responders")` once deleted). */
  get state(): BucketState {
    const state = this.conn.cluster.buckets.get(this.name);
    if (!state) {
      throw new MeshError("no_responders", `Bucket "${this.name}" does not exist (deleted)`);
    }
    return state;
  }

  #run<T>(fn: () => T): Promise<T> {
    try {
      this.conn.check();
      return Promise.resolve(fn());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  incarnationNow(): Promise<KvIncarnation> {
    return this.#run(() => {
      const state = this.state;
      return { id: state.incarnation, createdAt: state.createdAt };
    });
  }

  get(key: string): Promise<KvEntry | null> {
    return this.#run(() => {
      checkKey(key);
      const e = this.state.entries.get(key);
      return e && e.operation === "PUT" ? copyEntry(e) : null;
    });
  }

  put(key: string, value: Uint8Array): Promise<number> {
    return this.#run(() => {
      checkKey(key);
      return this.state.write(key, value, "PUT");
    });
  }

  create(key: string, value: Uint8Array): Promise<number> {
    return this.#run(() => {
      checkKey(key);
      const e = this.state.entries.get(key);
      if (e && e.operation === "PUT") throw conflict(this.name, key, "key exists");
      return this.state.write(key, value, "PUT");
    });
  }

  update(key: string, value: Uint8Array, revision: number): Promise<number> {
    return this.#run(() => {
      checkKey(key);
      const current = this.state.entries.get(key)?.revision ?? 0;
      if (current !== revision) {
        throw conflict(this.name, key, `expected revision ${revision}, latest is ${current}`);
      }
      return this.state.write(key, value, "PUT");
    });
  }

  delete(key: string, options?: { revision?: number }): Promise<void> {
    return this.#run(() => {
      checkKey(key);
      const expected = options?.revision;
      if (expected !== undefined) {
        const current = this.state.entries.get(key)?.revision ?? 0;
        if (current !== expected) {
          throw conflict(this.name, key, `expected revision ${expected}, latest is ${current}`);
        }
      }
      this.state.write(key, new Uint8Array(0), "DEL");
    });
  }

  keys(filter = ">"): Promise<string[]> {
    return this.#run(() => {
      checkFilter(filter);
      const out: string[] = [];
      for (const [k, e] of this.state.entries) {
        if (e.operation === "PUT" && subjectMatches(filter, k)) out.push(k);
      }
      return out;
    });
  }

  watch(options?: { key?: string; initial?: boolean }): KvWatch {
    this.conn.check();
    const filter = options?.key ?? ">";
    checkFilter(filter);
    const state = this.state;
    const w = new WatchImpl(this.conn, state, filter);
    if (options?.initial ?? true) {
      const initial = [...state.entries.values()]
        .filter((e) => e.operation === "PUT" && subjectMatches(filter, e.key))
        .sort((x, y) => x.revision - y.revision);
      for (const e of initial) w.offer(e);
    }
    state.watchers.add(w);
    this.conn.track(w, true);
    return w;
  }
}

class WatchImpl implements KvWatch {
  readonly ready: Promise<void> = Promise.resolve();
  readonly #queue = createEventQueue<KvEntry>();

  constructor(
    readonly conn: InProcessConnection,
    readonly state: BucketState,
    readonly filter: string,
  ) {
    this.#queue.onStop(() => {
      this.state.watchers.delete(this);
      this.conn.track(this, false);
    });
  }

  offer(entry: KvEntry): void {
    if (subjectMatches(this.filter, entry.key)) this.#queue.push(copyEntry(entry));
  }

  stop(): void {
    this.#queue.stop(true);
  }

  [Symbol.asyncIterator](): AsyncIterator<KvEntry> {
    return this.#queue[Symbol.asyncIterator]();
  }
}
