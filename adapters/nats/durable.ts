/**
 * Durable topics on NATS: one JetStream stream per prefix (`<prefix>_topics`, capturing
 * `<prefix>.d.>`), durable pull consumers with explicit acks, and deduplication by the
 * `Nats-Msg-Id` header. Internal: `NatsMeshConnection.durableTopics()` returns it.
 *
 * Decisions:
 * - The stream is made by the first node that needs it (a publish or a consumer), R3 when
 *   the client knows of 3 or more servers (like the KV buckets). One that exists is used as
 *   it is: its limits belong to the operator once made.
 * - Consumers are created with `max_deliver: -1`: the node decides when a message has failed
 *   often enough (the core's `maxDeliver`) and moves it to its dead-letter topic itself, so a
 *   node that dies during the last attempt does not make the message vanish with a server
 *   advisory; backoff between failures is the `nak` delay (JetStream's `backoff` only spaces
 *   ack timeouts).
 * - A `from: "new"` consumer starts after the stream's last sequence as its leader reports it,
 *   never with `DeliverPolicy.New`: on nats-server 2.9.10 a consumer placed on a lagging
 *   replica of an R3 stream would also deliver messages stored before it was created.
 * - A consumption pulls only for its free room (`maxInFlight` minus messages not settled),
 *   with 5 s long polls and 1 s idle heartbeats, so a pull lost with its server is noticed
 *   within seconds and sent again (to the consumer's new leader).
 * - A publish with a dedup id is retried while JetStream has no leader or does not answer
 *   (the id makes a resend harmless within the duplicate window); without one, only while
 *   nothing answered at all (nothing was stored).
 *
 * @module
 */

import { type Msg, nanos, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import {
  AckPolicy,
  type ApiError,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamManager,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import {
  delay,
  type DurableConsumer,
  type DurableConsumerConfig,
  type DurableConsumption,
  type DurableMessage,
  type DurablePublishOptions,
  type DurableReceipt,
  type DurableTopics,
  isValidSubject,
  MeshError,
  type MeshHeaders,
  type MeshMessage,
  type MeshStatus,
  type RequestOptions,
  systemClock,
} from "../../spi.ts";
import {
  backoff,
  isNoResponders,
  isStreamNotFound,
  isTemporaryBucketOpen,
  isTemporaryJs,
  retry,
} from "./_util.ts";
import type { NatsDurableTopicsOptions, NatsMeshOptions } from "./options.ts";
import { NatsSetupError } from "./setup.ts";

/** What durable topics need from their connection (`NatsMeshConnection`). */
export interface DurableHost {
  /** The NATS client connection. */
  readonly nc: NatsConnection;
  /** The mesh's options. */
  readonly options: NatsMeshOptions;
  /** Whether the client is connected now. */
  readonly connected: boolean;
  /** Checks once that the server runs JetStream (a clear setup error otherwise). */
  ensureJetStream(): Promise<void>;
  /** The JetStream manager. */
  jsm(): Promise<JetStreamManager>;
  /** Replicas for a stream: what is asked, clamped to the known cluster. */
  replicasFor(requested: number | undefined): number;
  /** A request through the connection's own mux. */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<MeshMessage>;
  /** A new inbox subject. */
  inbox(): string;
  /** Reports a status to the connection's listeners. */
  emit(status: MeshStatus): void;
}

/** Whether a stream create failed for want of storage (10047): not something a retry fixes. */
function noRoom(err: unknown): boolean {
  return err instanceof JetStreamApiError &&
    (err.code === 10047 || /insufficient storage/i.test(err.message));
}

const CONSUMER_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** The stream's default `max_bytes`: none (a limit is reserved in the account's store). */
const DEFAULT_MAX_BYTES = -1;
const MAX_ID = 128;
/** Long poll of one pull request, ms. */
const PULL_EXPIRES = 5_000;
/** Idle heartbeat of a pull request, ms. */
const PULL_HEARTBEAT = 1_000;

/**
 * Throws a `RangeError`/`TypeError` for bad {@link NatsDurableTopicsOptions} (called by
 * `natsMesh`, so a bad option fails at once). Internal.
 */
export function checkDurableOptions(o: NatsDurableTopicsOptions | undefined): void {
  if (!o) return;
  for (const k of ["maxAge", "maxBytes", "duplicateWindow"] as const) {
    const v = o[k];
    if (v !== undefined && !(v > 0)) {
      throw new RangeError(`Cannot use durableTopics.${k} ${v}: must be positive`);
    }
  }
  if (o.replicas !== undefined && !(o.replicas >= 1 && o.replicas <= 5)) {
    throw new RangeError(`Cannot use durableTopics.replicas ${o.replicas}: must be 1 to 5`);
  }
  if (o.storage !== undefined && o.storage !== "file" && o.storage !== "memory") {
    throw new TypeError(`Cannot use durableTopics.storage "${o.storage}": "file" or "memory"`);
  }
}

/** The durable topics of one NATS mesh connection. Internal. */
export class NatsDurableTopics implements DurableTopics {
  readonly #conn: DurableHost;
  readonly #prefix: string;
  /** The stream's name. */
  readonly stream: string;
  readonly #subjects: string;
  #ready: Promise<void> | undefined;
  readonly #consumptions = new Set<NatsConsumption>();

  constructor(conn: DurableHost) {
    this.#conn = conn;
    this.#prefix = conn.options.prefix ?? "troupe";
    this.stream = `${this.#prefix}_topics`;
    this.#subjects = `${this.#prefix}.d.>`;
  }

  #checkSubject(subject: string, wildcards: boolean): void {
    if (
      typeof subject !== "string" || !isValidSubject(subject, wildcards) ||
      !subject.startsWith(`${this.#prefix}.d.`)
    ) {
      throw new TypeError(
        `Cannot use subject "${subject}" for durable topics: it must be under "${this.#prefix}.d."`,
      );
    }
  }

  #closed(): boolean {
    const nc = this.#conn.nc;
    return nc.isClosed() || nc.isDraining();
  }

  #checkOpen(what: string): void {
    if (this.#closed()) throw new MeshError("closed", `${what}: connection closed`);
  }

  /** The stream exists (made once per connection; a failed attempt is tried again later). */
  ensureStream(): Promise<void> {
    const p = this.#ready ??= this.#makeStream();
    p.catch(() => {
      if (this.#ready === p) this.#ready = undefined;
    });
    return p;
  }

  async #makeStream(): Promise<void> {
    const conn = this.#conn;
    await conn.ensureJetStream();
    const o = conn.options.durableTopics ?? {};
    const jsm = await conn.jsm();
    const what = `Cannot open the durable topics' stream "${this.stream}"`;
    const deadline = performance.now() + 3 * (conn.options.connectTimeout ?? 10_000);
    const info = await retry(
      async () => {
        try {
          return await jsm.streams.info(this.stream);
        } catch (err) {
          if (!isStreamNotFound(err)) throw err;
        }
        try {
          return await jsm.streams.add({
            name: this.stream,
            description: `Troupe durable topics (${this.#subjects})`,
            subjects: [this.#subjects],
            retention: RetentionPolicy.Limits,
            discard: DiscardPolicy.Old,
            storage: o.storage === "memory" ? StorageType.Memory : StorageType.File,
            max_age: nanos(o.maxAge ?? 7 * 24 * 3_600_000),
            max_bytes: o.maxBytes ?? DEFAULT_MAX_BYTES,
            duplicate_window: nanos(o.duplicateWindow ?? 120_000),
            num_replicas: conn.replicasFor(o.replicas),
            allow_direct: false,
          });
        } catch (err) {
          // made at the same moment by another node: read it
          if (err instanceof JetStreamApiError && /already in use/i.test(err.message)) {
            return await jsm.streams.info(this.stream);
          }
          throw err;
        }
      },
      (err) => !noRoom(err) && isTemporaryBucketOpen(err),
      deadline,
      what,
    ).catch((err) => {
      if (!noRoom(err)) throw err;
      throw new NatsSetupError(
        "jetstream_no_room",
        `${what}: the server's JetStream has no room for it (${
          (err as Error).message
        }): a stream reserves its maxBytes (${o.maxBytes} bytes) in the account's store; lower \`durableTopics.maxBytes\` of natsMesh, ` +
          `or raise \`max_file_store\` in the server's \`jetstream { }\` block`,
        err,
      );
    });
    if (!info.config.subjects?.includes(this.#subjects)) {
      throw new TypeError(
        `${what}: it exists without the subjects "${this.#subjects}" (it has ${
          JSON.stringify(info.config.subjects ?? [])
        }); delete it or add them with \`nats stream edit\``,
      );
    }
    // the first writes must not fail while a replicated stream elects its leader
    await retry(
      async () => {
        const si = await jsm.streams.info(this.stream);
        if (si.config.num_replicas > 1 && !si.cluster?.leader) throw new MeshError("timeout", "");
      },
      (err) => isTemporaryBucketOpen(err) || err instanceof MeshError,
      deadline,
      what,
    );
  }

  async publish(
    subject: string,
    data: Uint8Array,
    options?: DurablePublishOptions,
  ): Promise<DurableReceipt> {
    const what = `Cannot store a message on "${subject}"`;
    this.#checkOpen(what);
    this.#checkSubject(subject, false);
    const id = options?.id;
    if (id !== undefined && (typeof id !== "string" || id === "" || id.length > MAX_ID)) {
      throw new TypeError(`Cannot use dedup id "${String(id).slice(0, 40)}": 1 to 128 characters`);
    }
    await (this.#ready ?? this.ensureStream());
    const headers: MeshHeaders = id === undefined
      ? options?.headers ?? {}
      : { ...options?.headers, "Nats-Msg-Id": id };
    const conn = this.#conn;
    const deadline = performance.now() + (conn.options.kvRetry ?? 5000);
    let again = false; // no responders after the stream was made: it may have been deleted
    return await retry(
      async () => {
        if (again) {
          again = false;
          this.#ready = undefined;
          await this.ensureStream();
        }
        return await this.#store(subject, data, headers);
      },
      (err) => {
        if (this.#closed()) return false;
        if (isNoResponders(err) || (err instanceof MeshError && err.code === "no_responders")) {
          return again = true;
        }
        return id !== undefined &&
          ((err instanceof MeshError && err.code === "timeout") || isTemporaryJs(err));
      },
      deadline,
      what,
    );
  }

  /**
   * One JetStream publish: a request to the subject, answered by the stream's leader with a
   * publish ack (`{ stream, seq, duplicate? }`) or `{ error }`. Sent through the connection's own
   * request mux, not the client's `js.publish`: the client builds an `Error`, with its stack
   * trace, for every request it completes (see docs/architecture.md, the NATS client).
   */
  async #store(subject: string, data: Uint8Array, headers: MeshHeaders): Promise<DurableReceipt> {
    const reply = await this.#conn.request(subject, data, {
      headers,
      timeout: this.#conn.options.kvTimeout ?? 5000,
    });
    let ack: { seq?: number; duplicate?: boolean; error?: ApiError };
    try {
      ack = JSON.parse(decoder.decode(reply.data));
    } catch (err) {
      throw new TypeError(`Not a JetStream publish ack from "${subject}"`, { cause: err });
    }
    if (ack.error) throw new JetStreamApiError(ack.error);
    if (typeof ack.seq !== "number") {
      throw new TypeError(`Not a JetStream publish ack from "${subject}"`);
    }
    return { seq: ack.seq, duplicate: ack.duplicate === true };
  }

  async consumer(config: DurableConsumerConfig): Promise<DurableConsumer> {
    const what = `Cannot open durable consumer "${config.name}"`;
    this.#checkOpen(what);
    if (typeof config.name !== "string" || !CONSUMER_NAME.test(config.name)) {
      throw new TypeError(
        `Cannot use durable consumer name "${config.name}": 1 to 64 of [A-Za-z0-9_-]`,
      );
    }
    this.#checkSubject(config.filter, true);
    if (!(config.ackWait > 0)) {
      throw new RangeError(`Cannot use ackWait ${config.ackWait}: must be positive`);
    }
    await this.ensureStream();
    await this.#ensureConsumer(config, what);
    return {
      name: config.name,
      consume: (handler, options) => this.#consume(config, handler, options.maxInFlight),
    };
  }

  /** Finds the consumer, or creates it from `config.from`; checks its filter. */
  async #ensureConsumer(
    config: DurableConsumerConfig,
    what: string,
    signal?: AbortSignal,
  ): Promise<ConsumerInfo> {
    const conn = this.#conn;
    const jsm = await conn.jsm();
    const deadline = performance.now() + 3 * (conn.options.connectTimeout ?? 10_000);
    const info = await retry(
      async () => {
        const found = await this.#info(config.name);
        if (found) return found;
        const start: Partial<ConsumerConfig> = { deliver_policy: DeliverPolicy.All };
        if (config.from === "new") {
          const si = await jsm.streams.info(this.stream); // from the leader
          start.deliver_policy = DeliverPolicy.StartSequence;
          start.opt_start_seq = si.state.last_seq + 1;
        } else if (config.from instanceof Date) {
          start.deliver_policy = DeliverPolicy.StartTime;
          start.opt_start_time = config.from.toISOString();
        }
        try {
          return await jsm.consumers.add(this.stream, {
            durable_name: config.name,
            ...(config.description !== undefined ? { description: config.description } : {}),
            ack_policy: AckPolicy.Explicit,
            ack_wait: nanos(config.ackWait),
            max_deliver: -1,
            filter_subject: config.filter,
            replay_policy: ReplayPolicy.Instant,
            ...start,
          });
        } catch (err) {
          // made at the same moment by another node, maybe from another start: use it
          if (err instanceof JetStreamApiError && /already (exists|in use)/i.test(err.message)) {
            const again = await this.#info(config.name);
            if (again) return again;
          }
          throw err;
        }
      },
      isTemporaryJs,
      deadline,
      what,
      signal,
    );
    if (info.config.filter_subject !== config.filter) {
      throw new TypeError(
        `Durable consumer "${config.name}" exists with filter "${info.config.filter_subject}", not "${config.filter}"`,
      );
    }
    return info;
  }

  async #info(name: string): Promise<ConsumerInfo | undefined> {
    const jsm = await this.#conn.jsm();
    try {
      return await jsm.consumers.info(this.stream, name);
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === 10014) return undefined;
      throw err;
    }
  }

  #consume(
    config: DurableConsumerConfig,
    handler: (msg: DurableMessage) => void,
    maxInFlight: number,
  ): DurableConsumption {
    this.#checkOpen(`Cannot consume "${config.name}"`);
    if (!(Number.isInteger(maxInFlight) && maxInFlight >= 1)) {
      throw new RangeError(`Cannot consume with maxInFlight ${maxInFlight}: a positive integer`);
    }
    const c = new NatsConsumption(
      this.#conn,
      this.stream,
      config,
      handler,
      maxInFlight,
      (signal) =>
        this.#ensureConsumer(config, `Cannot open durable consumer "${config.name}"`, signal),
      (c) => this.#consumptions.delete(c),
    );
    this.#consumptions.add(c);
    return c;
  }

  async deleteConsumer(name: string): Promise<void> {
    const what = `Cannot delete durable consumer "${name}"`;
    this.#checkOpen(what);
    if (typeof name !== "string" || !CONSUMER_NAME.test(name)) {
      throw new TypeError(`${what}: not a consumer name`);
    }
    await this.ensureStream();
    const jsm = await this.#conn.jsm();
    try {
      await retry(
        () => jsm.consumers.delete(this.stream, name),
        isTemporaryJs,
        performance.now() + (this.#conn.options.kvRetry ?? 5000),
        what,
      );
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === 10014)) throw err;
    }
  }

  /** Stops every consumption (the connection is closing). */
  async close(): Promise<void> {
    await Promise.all([...this.#consumptions].map((c) => c.stop()));
  }
}

const enc = new TextEncoder();
const decoder = new TextDecoder();
const ACK = enc.encode("+ACK");
const NAK = enc.encode("-NAK");
const TERM = enc.encode("+TERM");
const WORKING = enc.encode("+WPI");

/**
 * One consumption: pull requests sized to the free room on one inbox subscription. Like the
 * client's `consume()` (a standing pull, refilled before it runs dry), except that the room is
 * what the handler has not settled yet (`maxInFlight`), not what the client has buffered.
 *
 * Messages asked for and not yet received are `#pending`; a 408 (request expired) gives back
 * what it did not deliver, a 409 (leadership change, consumer deleted, …) or a 503 (no leader)
 * forgets every request. A pull lost with its server is noticed by the missing idle
 * heartbeats (1 s), then the consumer is looked up (and made again if it is gone) and pulled
 * again. After such a reset a request thought lost may still deliver: the room can then be
 * passed by at most one batch, for at most one pull's life (5 s).
 */
class NatsConsumption implements DurableConsumption {
  readonly #conn: DurableHost;
  readonly #next: string;
  readonly #handler: (msg: DurableMessage) => void;
  readonly #max: number;
  readonly #threshold: number;
  readonly #ensure: (signal: AbortSignal) => Promise<unknown>;
  /** Aborted by stop(): a pause before a try again ends at once (no timer outlives the stop). */
  readonly #stop = new AbortController();
  readonly #onEnd: (c: NatsConsumption) => void;
  readonly #sub: Subscription;
  readonly #inbox: string;
  readonly #timer: ReturnType<typeof setInterval>;
  #inFlight = 0;
  #pending = 0;
  #lastSeen = performance.now();
  #stopped = false;
  #recovering = false;
  #failures = 0;
  #resolveClosed!: () => void;
  readonly closed: Promise<void> = new Promise((r) => this.#resolveClosed = r);

  constructor(
    conn: DurableHost,
    stream: string,
    config: DurableConsumerConfig,
    handler: (msg: DurableMessage) => void,
    max: number,
    ensure: (signal: AbortSignal) => Promise<unknown>,
    onEnd: (c: NatsConsumption) => void,
  ) {
    this.#conn = conn;
    this.#next = `$JS.API.CONSUMER.MSG.NEXT.${stream}.${config.name}`;
    this.#handler = handler;
    this.#max = max;
    // pull when half the room is free, not for each freed slot (a pull per message)
    this.#threshold = Math.ceil(max / 2);
    this.#ensure = ensure;
    this.#onEnd = onEnd;
    this.#inbox = conn.inbox();
    this.#sub = conn.nc.subscribe(this.#inbox, { callback: (err, msg) => this.#onMsg(err, msg) });
    this.#timer = setInterval(() => this.#check(), PULL_HEARTBEAT);
    queueMicrotask(() => this.#pull()); // never inside consume()
  }

  #closedConn(): boolean {
    return this.#conn.nc.isClosed() || this.#conn.nc.isDraining();
  }

  /** Asks for what the room allows, when that is at least the threshold. */
  #pull(): void {
    if (this.#stopped || this.#recovering) return;
    if (this.#closedConn()) return void this.stop();
    const want = this.#max - this.#inFlight - this.#pending;
    if (want < this.#threshold && (want <= 0 || this.#pending > 0)) return;
    const body = JSON.stringify({
      batch: want,
      expires: nanos(PULL_EXPIRES),
      idle_heartbeat: nanos(PULL_HEARTBEAT),
    });
    try {
      this.#conn.nc.publish(this.#next, enc.encode(body), { reply: this.#inbox });
      this.#pending += want;
    } catch {
      // disconnected: the heartbeat check pulls again
    }
  }

  #onMsg(err: Error | null, msg: Msg): void {
    if (this.#stopped) return;
    this.#lastSeen = performance.now();
    if (err) return this.#recover();
    const reply = msg.reply ?? "";
    if (reply.startsWith("$JS.ACK.")) {
      this.#failures = 0;
      this.#pending = Math.max(0, this.#pending - 1);
      return this.#deliver(msg, reply);
    }
    let code = 0;
    let left = NaN;
    try {
      code = msg.headers?.code ?? 0;
      left = Number(msg.headers?.get("Nats-Pending-Messages") || NaN);
    } catch {
      // malformed: ignored
    }
    if (code === 100) return; // idle heartbeat
    if (code === 408 || code === 404) {
      // expired (or nothing to give): what it did not deliver is free again
      this.#pending = Number.isFinite(left) ? Math.max(0, this.#pending - left) : 0;
      return this.#pull();
    }
    // 409 (leadership change, consumer deleted, too many pulls waiting), 503 (no leader), …
    this.#recover();
  }

  /** Forgets the pulls, makes sure the consumer exists, then pulls again (with backoff). */
  #recover(): void {
    if (this.#recovering || this.#stopped) return;
    this.#recovering = true;
    this.#pending = 0;
    void (async () => {
      try {
        await delay(systemClock, backoff(this.#failures++), this.#stop.signal);
        if (!this.#stopped && !this.#closedConn()) await this.#ensure(this.#stop.signal);
      } catch {
        // the store is away: the next check tries again
      } finally {
        this.#recovering = false;
        this.#lastSeen = performance.now();
        this.#pull();
      }
    })();
  }

  /** Every heartbeat: a pull that went silent (its server died, a reconnect) is replaced. */
  #check(): void {
    if (this.#stopped) return;
    if (!this.#conn.connected) {
      this.#lastSeen = performance.now(); // nothing can come while disconnected
      return;
    }
    if (this.#pending > 0 && performance.now() - this.#lastSeen > 2 * PULL_HEARTBEAT + 500) {
      return this.#recover();
    }
    this.#pull();
  }

  #deliver(m: Msg, reply: string): void {
    // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>, or the v2 form
    // with <domain>.<account hash> after ACK and a random token at the end
    const t = reply.split(".");
    const o = t.length >= 12 ? 4 : 2;
    const deliveries = Number(t[o + 2]);
    const seq = Number(t[o + 3]);
    let storedAt = Date.now();
    try {
      storedAt = Number(BigInt(t[o + 5]!) / 1_000_000n);
    } catch {
      // not a number: now will do
    }
    this.#inFlight++;
    let settled = false;
    const nc = this.#conn.nc;
    const send = (payload: Uint8Array) => {
      try {
        nc.publish(reply, payload);
      } catch {
        // closed: the message comes back after ackWait
      }
    };
    const settle = (payload: Uint8Array) => {
      if (settled) return;
      settled = true;
      this.#inFlight--;
      send(payload);
      this.#pull();
    };
    let headers: MeshHeaders = {};
    try {
      const h = m.headers;
      if (h) { for (const k of h.keys()) headers[k] = h.get(k); }
    } catch {
      headers = {};
    }
    const id = headers["Nats-Msg-Id"];
    const msg: DurableMessage = {
      subject: m.subject,
      headers,
      data: m.data,
      seq,
      deliveries,
      storedAt,
      ...(id ? { id } : {}),
      ack: () => settle(ACK),
      nak: (delayMs?: number) =>
        settle(
          delayMs && delayMs > 0
            ? enc.encode(`-NAK ${JSON.stringify({ delay: nanos(delayMs) })}`)
            : NAK,
        ),
      term: () => settle(TERM),
      working: () => {
        if (!settled) send(WORKING);
      },
    };
    try {
      this.#handler(msg);
    } catch (err) {
      this.#conn.emit({ type: "error", error: err });
    }
  }

  stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#stop.abort();
      clearInterval(this.#timer);
      try {
        // the server drops the pulls waiting for an inbox nobody listens on
        this.#sub.unsubscribe();
      } catch {
        // closed already
      }
      this.#onEnd(this);
      this.#resolveClosed();
    }
    return this.closed;
  }
}
