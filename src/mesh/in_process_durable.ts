/**
 * Durable topics of the in-process mesh ({@link DurableTopics} in memory): one store per
 * `inProcessMesh()` value, shared by its connections, so that a system closed and started
 * again on the same mesh finds its named consumers where they were, as on NATS.
 *
 * Timers run only while a consumption waits for a redelivery that is not due yet: a store
 * with nobody consuming holds no timer, so a test that ends with messages unsettled leaks
 * nothing. Due times are computed when they are looked at (a message whose `ackWait` passed
 * while no consumption ran is due the moment one starts).
 *
 * @module
 */

import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import { isValidSubject, subjectMatches } from "./subject.ts";
import {
  type DurableConsumer,
  type DurableConsumerConfig,
  type DurableConsumption,
  type DurableMessage,
  type DurablePublishOptions,
  type DurableReceipt,
  type DurableTopics,
  MeshError,
  type MeshHeaders,
  type MeshMessage,
} from "./types.ts";

/**
 * Limits of the in-process store: past any of them the oldest messages are dropped (as a
 * NATS stream with `discard: old` does).
 *
 * @example
 * ```ts
 * import { inProcessMesh } from "./in_process.ts";
 *
 * const mesh = inProcessMesh({ durable: { maxAge: 60_000, maxMessages: 1_000 } });
 * ```
 */
export interface InProcessDurableOptions {
  /** How long a message is kept, ms. @default {604800000} (7 days) */
  maxAge?: number;
  /** Most messages kept. @default {100000} */
  maxMessages?: number;
  /** Most bytes (bodies) kept. @default {67108864} (64 MiB) */
  maxBytes?: number;
  /** How long a publish's `id` is remembered to drop a duplicate, ms. @default {120000} */
  duplicateWindow?: number;
}

/** The longest deduplication id. */
export const MAX_DURABLE_ID = 128;
const CONSUMER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

interface Stored {
  readonly seq: number;
  readonly subject: string;
  readonly headers: MeshHeaders;
  readonly data: Uint8Array;
  readonly storedAt: number;
  readonly id: string | undefined;
}

/** What the store needs from its mesh. */
export interface StoreHost {
  /** The mesh's prefix: stored subjects are under `<prefix>.d.`. */
  readonly prefix: string;
  /** Routes a stored message to the mesh's plain subscribers. */
  route(msg: MeshMessage): void;
  readonly clock?: Clock;
}

/** The store of one in-process mesh. Internal. */
export class DurableStore {
  readonly #host: StoreHost;
  readonly #clock: Clock;
  readonly #limits: Required<InProcessDurableOptions>;
  readonly #subjectPrefix: string;
  /** Stored messages, oldest first, from `#head`. */
  #messages: (Stored | undefined)[] = [];
  #head = 0;
  #bytes = 0;
  #seq = 0;
  readonly #ids = new Map<string, { seq: number; at: number }>();
  readonly consumers = new Map<string, ConsumerState>();

  constructor(host: StoreHost, options: InProcessDurableOptions = {}) {
    this.#host = host;
    this.#clock = host.clock ?? systemClock;
    this.#limits = {
      maxAge: positive(options.maxAge ?? 7 * 24 * 3_600_000, "durable.maxAge"),
      maxMessages: positive(options.maxMessages ?? 100_000, "durable.maxMessages"),
      maxBytes: positive(options.maxBytes ?? 64 * 1024 * 1024, "durable.maxBytes"),
      duplicateWindow: positive(options.duplicateWindow ?? 120_000, "durable.duplicateWindow"),
    };
    this.#subjectPrefix = `${host.prefix}.d.`;
  }

  get clock(): Clock {
    return this.#clock;
  }

  /** The first stored sequence (the next one when the store is empty). */
  get firstSeq(): number {
    this.#expire();
    return this.#messages[this.#head]?.seq ?? this.#seq + 1;
  }

  get lastSeq(): number {
    return this.#seq;
  }

  /** The stored message `seq`, if it is still kept. */
  get(seq: number): Stored | undefined {
    const first = this.#messages[this.#head];
    if (!first || seq < first.seq) return undefined;
    return this.#messages[this.#head + seq - first.seq];
  }

  /** The first stored message at or after `seq` matching `filter`. */
  nextMatching(seq: number, filter: string): Stored | undefined {
    this.#expire();
    const first = this.#messages[this.#head];
    if (!first) return undefined;
    for (let i = this.#head + Math.max(0, seq - first.seq); i < this.#messages.length; i++) {
      const m = this.#messages[i]!;
      if (subjectMatches(filter, m.subject)) return m;
    }
    return undefined;
  }

  /** The first sequence stored at or after `at` (ms since the epoch). */
  seqAt(at: number): number {
    this.#expire();
    for (let i = this.#head; i < this.#messages.length; i++) {
      const m = this.#messages[i]!;
      if (m.storedAt >= at) return m.seq;
    }
    return this.#seq + 1;
  }

  checkSubject(subject: string, wildcards: boolean): void {
    if (!isValidSubject(subject, wildcards) || !subject.startsWith(this.#subjectPrefix)) {
      throw new TypeError(
        `Cannot use subject "${subject}" for durable topics: it must be under "${this.#subjectPrefix}"`,
      );
    }
  }

  /** Stores `msg` (already checked and sized by the connection). */
  publish(msg: MeshMessage, id: string | undefined): DurableReceipt {
    const now = this.#clock.now();
    if (id !== undefined) {
      this.#forgetIds(now);
      const known = this.#ids.get(id);
      if (known) return { seq: known.seq, duplicate: true };
    }
    const stored: Stored = {
      seq: ++this.#seq,
      subject: msg.subject,
      headers: msg.headers,
      data: msg.data.slice(),
      storedAt: now,
      id,
    };
    if (id !== undefined) this.#ids.set(id, { seq: stored.seq, at: now });
    this.#messages.push(stored);
    this.#bytes += stored.data.byteLength;
    this.#expire(now);
    this.#host.route(msg);
    for (const c of this.consumers.values()) c.pump();
    return { seq: stored.seq, duplicate: false };
  }

  #forgetIds(now: number): void {
    const oldest = now - this.#limits.duplicateWindow;
    for (const [id, e] of this.#ids) {
      if (e.at >= oldest) break; // insertion order is time order
      this.#ids.delete(id);
    }
  }

  /** Drops what the limits no longer allow. */
  #expire(now = this.#clock.now()): void {
    const { maxAge, maxMessages, maxBytes } = this.#limits;
    while (this.#head < this.#messages.length) {
      const m = this.#messages[this.#head]!;
      const count = this.#messages.length - this.#head;
      if (count <= maxMessages && this.#bytes <= maxBytes && m.storedAt > now - maxAge) break;
      this.#messages[this.#head++] = undefined;
      this.#bytes -= m.data.byteLength;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#messages.length) {
      this.#messages = this.#messages.slice(this.#head);
      this.#head = 0;
    }
  }

  /** The consumer `config.name`, created when missing. */
  consumer(config: DurableConsumerConfig): ConsumerState {
    if (typeof config.name !== "string" || !CONSUMER_NAME.test(config.name)) {
      throw new TypeError(
        `Cannot use durable consumer name "${config.name}": 1 to 64 of [A-Za-z0-9_-]`,
      );
    }
    this.checkSubject(config.filter, true);
    if (!(config.ackWait > 0)) {
      throw new RangeError(`Cannot use ackWait ${config.ackWait}: must be positive`);
    }
    const existing = this.consumers.get(config.name);
    if (existing) {
      if (existing.filter !== config.filter) {
        throw new TypeError(
          `Durable consumer "${config.name}" exists with filter "${existing.filter}", not "${config.filter}"`,
        );
      }
      return existing;
    }
    const from = config.from;
    const start = from === "all"
      ? this.firstSeq
      : from === "new"
      ? this.#seq + 1
      : this.seqAt(from.getTime());
    const c = new ConsumerState(this, config.name, config.filter, config.ackWait, start);
    this.consumers.set(config.name, c);
    return c;
  }

  deleteConsumer(name: string): void {
    const c = this.consumers.get(name);
    if (!c) return;
    this.consumers.delete(name);
    c.delete();
  }
}

/** A message delivered and not settled yet. */
interface Pending {
  readonly seq: number;
  deliveries: number;
  /** When it is delivered again unless settled (clock.monotonic()). */
  dueAt: number;
  /** Whether it is out with a consumption now (else it waits for `dueAt`). */
  out: boolean;
}

/** A named consumer's state: its position and the messages delivered but not settled. */
class ConsumerState {
  readonly #store: DurableStore;
  readonly name: string;
  readonly filter: string;
  readonly ackWait: number;
  /** The next sequence never delivered. */
  #next: number;
  readonly #pending = new Map<number, Pending>();
  readonly #consumptions: Consumption[] = [];
  #turn = 0;
  #timer: TimerId | undefined;
  #timerAt = Infinity;
  #pumping = false;
  #deleted = false;

  constructor(store: DurableStore, name: string, filter: string, ackWait: number, next: number) {
    this.#store = store;
    this.name = name;
    this.filter = filter;
    this.ackWait = ackWait;
    this.#next = next;
  }

  add(c: Consumption): void {
    this.#consumptions.push(c);
    this.pump();
  }

  remove(c: Consumption): void {
    const i = this.#consumptions.indexOf(c);
    if (i >= 0) this.#consumptions.splice(i, 1);
    if (this.#consumptions.length === 0) this.#clearTimer();
  }

  delete(): void {
    this.#deleted = true;
    for (const c of [...this.#consumptions]) c.end();
    this.#pending.clear();
    this.#clearTimer();
  }

  /** Settles delivery `deliveries` of `seq` (a stale delivery's nak/term/working is ignored). */
  settle(
    seq: number,
    deliveries: number,
    how: "ack" | "nak" | "term" | "working",
    delay = 0,
  ): void {
    const p = this.#pending.get(seq);
    if (!p || this.#deleted) return;
    if (how !== "ack" && p.deliveries !== deliveries) return;
    const now = this.#store.clock.monotonic();
    if (how === "ack" || how === "term") this.#pending.delete(seq);
    else if (how === "nak") {
      p.out = false;
      p.dueAt = now + Math.max(0, delay);
    } else if (p.out) p.dueAt = now + this.ackWait;
    this.pump();
  }

  /** Delivers what is due to consumptions with room, round robin; arms the timer. */
  pump(): void {
    if (this.#pumping || this.#deleted) return;
    this.#pumping = true;
    try {
      for (;;) {
        const c = this.#withRoom();
        if (!c) break;
        const now = this.#store.clock.monotonic();
        const due = this.#firstDue(now);
        if (due) {
          const m = this.#store.get(due.seq);
          if (!m) {
            this.#pending.delete(due.seq); // dropped by the store's limits
            continue;
          }
          due.deliveries++;
          due.out = true;
          due.dueAt = now + this.ackWait;
          c.deliver(m, due.deliveries);
          continue;
        }
        const m = this.#store.nextMatching(this.#next, this.filter);
        if (!m) break;
        this.#next = m.seq + 1;
        this.#pending.set(m.seq, {
          seq: m.seq,
          deliveries: 1,
          dueAt: now + this.ackWait,
          out: true,
        });
        c.deliver(m, 1);
      }
    } finally {
      this.#pumping = false;
    }
    this.#arm();
  }

  #withRoom(): Consumption | undefined {
    const n = this.#consumptions.length;
    for (let i = 0; i < n; i++) {
      const c = this.#consumptions[(this.#turn + i) % n]!;
      if (c.hasRoom()) {
        this.#turn = (this.#turn + i + 1) % n;
        return c;
      }
    }
    return undefined;
  }

  /** The pending message due first (lowest due time, then sequence), if due by `now`. */
  #firstDue(now: number): Pending | undefined {
    let best: Pending | undefined;
    for (const p of this.#pending.values()) {
      if (p.dueAt > now) continue;
      if (!best || p.dueAt < best.dueAt || (p.dueAt === best.dueAt && p.seq < best.seq)) best = p;
    }
    return best;
  }

  /** A timer for the next due time, while some consumption could take it. */
  #arm(): void {
    if (this.#consumptions.length === 0) return this.#clearTimer();
    let at = Infinity;
    for (const p of this.#pending.values()) at = Math.min(at, p.dueAt);
    if (at === Infinity) return this.#clearTimer();
    if (this.#timer !== undefined && at >= this.#timerAt) return;
    this.#clearTimer();
    const clock = this.#store.clock;
    this.#timerAt = at;
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.pump();
    }, Math.max(0, at - clock.monotonic()) + 1);
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) this.#store.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }
}

/** One consumption: a handler taking up to `maxInFlight` unsettled messages. */
class Consumption implements DurableConsumption {
  #inFlight = 0;
  #ended = false;
  #resolveClosed!: () => void;
  readonly closed: Promise<void> = new Promise((r) => this.#resolveClosed = r);

  constructor(
    readonly consumer: ConsumerState,
    readonly handler: (msg: DurableMessage) => void,
    readonly maxInFlight: number,
    readonly onEnd: (c: Consumption) => void,
    readonly report: (err: unknown) => void,
  ) {}

  hasRoom(): boolean {
    return !this.#ended && this.#inFlight < this.maxInFlight;
  }

  get ended(): boolean {
    return this.#ended;
  }

  deliver(m: Stored, deliveries: number): void {
    this.#inFlight++;
    let settled = false;
    const consumer = this.consumer;
    const settle = (how: "ack" | "nak" | "term", delay?: number) => {
      if (settled) return;
      settled = true;
      this.#inFlight--;
      consumer.settle(m.seq, deliveries, how, delay);
    };
    const msg: DurableMessage = {
      subject: m.subject,
      headers: m.headers,
      data: m.data,
      seq: m.seq,
      deliveries,
      storedAt: m.storedAt,
      ...(m.id !== undefined ? { id: m.id } : {}),
      ack: () => settle("ack"),
      nak: (delay?: number) => settle("nak", delay),
      term: () => settle("term"),
      working: () => {
        if (!settled) consumer.settle(m.seq, deliveries, "working");
      },
    };
    queueMicrotask(() => {
      if (this.#ended) return settle("nak"); // stopped before it was handed over
      try {
        this.handler(msg);
      } catch (err) {
        this.report(err);
      }
    });
  }

  stop(): Promise<void> {
    this.end();
    return Promise.resolve();
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.consumer.remove(this);
    this.onEnd(this);
    this.#resolveClosed();
  }
}

/**
 * The {@link DurableTopics} of one connection of the in-process mesh: its consumptions end
 * when the connection closes. Internal.
 */
export class InProcessDurableTopics implements DurableTopics {
  readonly #store: DurableStore;
  readonly #check: () => void;
  readonly #message: (subject: string, data: Uint8Array, headers?: MeshHeaders) => MeshMessage;
  readonly #report: (err: unknown) => void;
  readonly #consumptions = new Set<Consumption>();

  constructor(
    store: DurableStore,
    check: () => void,
    message: (subject: string, data: Uint8Array, headers?: MeshHeaders) => MeshMessage,
    report: (err: unknown) => void,
  ) {
    this.#store = store;
    this.#check = check;
    this.#message = message;
    this.#report = report;
  }

  publish(
    subject: string,
    data: Uint8Array,
    options?: DurablePublishOptions,
  ): Promise<DurableReceipt> {
    try {
      this.#check();
      this.#store.checkSubject(subject, false);
      const id = options?.id;
      if (id !== undefined && (typeof id !== "string" || id === "" || id.length > MAX_DURABLE_ID)) {
        throw new TypeError(
          `Cannot use dedup id "${String(id).slice(0, 40)}": 1 to 128 characters`,
        );
      }
      const msg = this.#message(subject, data, options?.headers);
      return Promise.resolve(this.#store.publish(msg, id));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  consumer(config: DurableConsumerConfig): Promise<DurableConsumer> {
    try {
      this.#check();
      const state = this.#store.consumer(config);
      return Promise.resolve({
        name: state.name,
        consume: (handler, options) => this.#consume(state, handler, options.maxInFlight),
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #consume(
    state: ConsumerState,
    handler: (msg: DurableMessage) => void,
    maxInFlight: number,
  ): DurableConsumption {
    this.#check();
    if (!(Number.isInteger(maxInFlight) && maxInFlight >= 1)) {
      throw new RangeError(`Cannot consume with maxInFlight ${maxInFlight}: a positive integer`);
    }
    if (this.#store.consumers.get(state.name) !== state) {
      throw new MeshError("closed", `Durable consumer "${state.name}" was deleted`);
    }
    const c = new Consumption(
      state,
      handler,
      maxInFlight,
      (c) => this.#consumptions.delete(c),
      this.#report,
    );
    this.#consumptions.add(c);
    queueMicrotask(() => {
      if (!c.ended) state.add(c); // never inside consume()
    });
    return c;
  }

  deleteConsumer(name: string): Promise<void> {
    try {
      this.#check();
      this.#store.deleteConsumer(name);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Ends every consumption of this connection (it is closing). */
  close(): void {
    for (const c of [...this.#consumptions]) c.end();
  }
}

function positive(value: number, what: string): number {
  if (!(value > 0)) throw new RangeError(`Cannot use ${what} ${value}: must be positive`);
  return value;
}
