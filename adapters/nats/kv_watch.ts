/**
 * KV watches of the NATS mesh: our own ordered push consumers with 1 s idle heartbeats,
 * recreated from the last delivered revision when they go silent, miss a message or the
 * connection reconnects. Internal: not exported from `mod.ts`.
 *
 * @module
 */

import { type Msg, nanos, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { createEventQueue, delay, type KvEntry, type KvWatch, systemClock } from "../../spi.ts";
import { backoff, EMPTY } from "./_util.ts";

const HEARTBEAT_MS = 1000;
/** A consumer without interest for this long is deleted by the server. */
const INACTIVE_MS = 5000;
/** How long a watch waits at most for the replicas of its bucket to catch up before it starts. */
const CATCH_UP_MS = 1000;

/**
 * What buckets and watches use of their node's connection (`NatsMeshConnection` in
 * connection.ts implements it): declared here, so that neither imports the connection.
 * Internal.
 */
export interface KvHost {
  /** The NATS client connection. */
  readonly nc: NatsConnection;
  /** The JetStream client (KV deletes publish through it). */
  readonly js: JetStreamClient;
  /** The mesh's options that KV calls read. */
  readonly options: { readonly kvRetry?: number | undefined };
  /** Watches, told about reconnects. */
  readonly watches: Set<NatsKvWatch>;
  /** Whether the client is connected now. */
  readonly connected: boolean;
  /** A new inbox subject. */
  inbox(): string;
  /** The JetStream manager (KV timeout). */
  jsm(): Promise<JetStreamManager>;
  /** A JetStream manager whose requests time out after `timeout` ms (at most the KV one). */
  jsmWithTimeout(timeout: number): Promise<JetStreamManager>;
}

/**
 * Watches being set up in this process, by bucket: writes to that bucket from this process
 * wait for them (bounded), so a watch sees every write issued after `watch()` returned.
 * Internal (shared with `kv.ts`).
 */
export const startingWatches = new Map<string, Set<Promise<void>>>();

/**
 * A watch: an ephemeral push consumer (no acks, flow control, 1 s heartbeats) that is
 * recreated from the last delivered revision when it goes silent, when a message is
 * missing, or after a reconnect.
 */
export class NatsKvWatch implements KvWatch {
  readonly #conn: KvHost;
  readonly #bucket: string;
  readonly #filter: string;
  readonly #initial: boolean;
  readonly #prefix: string;
  readonly #stream: string;
  readonly #queue = createEventQueue<KvEntry>();
  #stopped = false;
  #gen = 0;
  #sub: Subscription | undefined;
  #lastSeq = 0;
  #baseline = false;
  #expected = 1;
  #initialLeft = 0;
  #held: Msg[] | undefined;
  #lastActive = performance.now();
  #timer: ReturnType<typeof setInterval>;
  #starting = false;
  /** Whether a consumer was created once (recreations use short timeouts). */
  #created = false;
  #stopSleep: AbortController = new AbortController();
  /** Settles once the first consumer exists (writes of this process wait for it). */
  readonly ready: Promise<void>;

  /** Starts watching `filter` in `bucket`; called by `NatsKvBucket.watch`. */
  constructor(conn: KvHost, bucket: string, filter: string, initial: boolean) {
    this.#conn = conn;
    this.#bucket = bucket;
    this.#filter = filter;
    this.#initial = initial;
    this.#prefix = `$KV.${bucket}.`;
    this.#stream = `KV_${bucket}`;
    conn.watches.add(this);
    this.#queue.onStop(() => this.stop()); // an iterator's return() stops the watch
    this.#timer = setInterval(() => {
      if (this.#conn.connected && !this.#starting) {
        if (performance.now() - this.#lastActive > 3 * HEARTBEAT_MS) this.restart("silent");
      }
    }, HEARTBEAT_MS);
    this.ready = this.#start();
    let set = startingWatches.get(bucket);
    if (!set) startingWatches.set(bucket, set = new Set());
    const ready = this.ready;
    set.add(ready);
    ready.finally(() => {
      set.delete(ready);
      if (set.size === 0 && startingWatches.get(bucket) === set) startingWatches.delete(bucket);
    }).catch(() => {});
  }

  /**
   * Called after the client reconnected, `away` ms after it lost its connection. A consumer
   * is deleted by the server once it had no interest for `inactive_threshold` (5 s); after a
   * shorter outage it may live on (on any server of the cluster), so it is not recreated
   * blindly: one that does not heartbeat within the silence bound, or whose heartbeat
   * reports deliveries this watch missed, is.
   */
  reconnected(away: number): void {
    if (away >= INACTIVE_MS - HEARTBEAT_MS) this.restart("reconnect");
    else this.#lastActive = performance.now();
  }

  /** Recreates the consumer from the last delivered revision. */
  restart(_why: string): void {
    if (this.#stopped || this.#starting) return;
    this.#start().catch(() => {});
  }

  async #start(): Promise<void> {
    this.#starting = true;
    try {
      for (let attempt = 0; !this.#stopped; attempt++) {
        const gen = ++this.#gen;
        this.#sub?.unsubscribe();
        const inbox = this.#conn.inbox();
        this.#expected = 1;
        this.#held = [];
        this.#lastActive = performance.now();
        this.#sub = this.#conn.nc.subscribe(inbox, {
          callback: (err, msg) => this.#onMessage(gen, err, msg),
        });
        try {
          // the first consumer gets the KV timeout; a recreated one 1 s, 2 s, … per attempt
          // (see NatsMeshConnection.jsmWithTimeout)
          const jsm = await (this.#created
            ? this.#conn.jsmWithTimeout(1000 * (attempt + 1))
            : this.#conn.jsm());
          if (!this.#initial && !this.#baseline) {
            // "only later changes": start after the stream's last message as its leader
            // knows it. (A "deliver new" consumer placed on a lagging replica of an R3
            // bucket would also deliver writes acknowledged before watch() was called.)
            const si = await jsm.streams.info(this.#stream);
            if (gen !== this.#gen || this.#stopped) {
              return;
            }
            this.#lastSeq = Math.max(this.#lastSeq, si.state.last_seq);
            this.#baseline = true;
          }
          const resume = this.#baseline || this.#lastSeq > 0;
          const policy = resume ? DeliverPolicy.StartSequence : DeliverPolicy.LastPerSubject;
          if (!resume) {
            // The latest of each key: the consumer may be placed on a replica of an R3 bucket,
            // whose store can be a write or two behind the leader's; it would then give keys as
            // they were before writes acknowledged before watch() was called (a deleted key as
            // live). Wait until the replicas that are up have caught up (bounded).
            await this.#replicasCaughtUp(jsm);
            if (gen !== this.#gen || this.#stopped) {
              return;
            }
          }
          const ci = await jsm.consumers.add(this.#stream, {
            deliver_subject: inbox,
            deliver_policy: policy,
            ...(resume ? { opt_start_seq: this.#lastSeq + 1 } : {}),
            ack_policy: AckPolicy.None,
            filter_subject: this.#prefix + this.#filter,
            flow_control: true,
            idle_heartbeat: nanos(HEARTBEAT_MS),
            inactive_threshold: nanos(INACTIVE_MS),
            mem_storage: true,
            num_replicas: 1,
          });
          if (gen !== this.#gen || this.#stopped) {
            return;
          }
          this.#created = true;
          this.#initialLeft = policy === DeliverPolicy.LastPerSubject ? ci.num_pending : 0;
          const held = this.#held ?? [];
          this.#held = undefined;
          this.#lastActive = performance.now();
          for (const m of held) {
            this.#onMessage(gen, null, m);
          }
          return;
        } catch {
          if (this.#conn.nc.isClosed()) return this.stop();
          try {
            await delay(systemClock, backoff(attempt + 3), this.#stopSleep.signal);
          } catch {
            return;
          }
        }
      }
    } finally {
      this.#starting = false;
    }
  }

  /**
   * Returns once every replica of the bucket's stream that is up is current with its leader
   * (as the leader reports it), or after {@link CATCH_UP_MS}: a replica that stays behind (a
   * slow server) does not hold the watch up for long.
   */
  async #replicasCaughtUp(jsm: JetStreamManager): Promise<void> {
    const end = performance.now() + CATCH_UP_MS;
    for (;;) {
      const si = await jsm.streams.info(this.#stream);
      const behind = (si.cluster?.replicas ?? []).some((p) =>
        !p.offline && (!p.current || p.lag > 0)
      );
      if (!behind || this.#stopped || performance.now() >= end) return;
      await delay(systemClock, 10, this.#stopSleep.signal);
    }
  }

  #onMessage(gen: number, err: Error | null, msg: Msg): void {
    if (gen !== this.#gen || this.#stopped) return;
    if (err) return this.restart("error");
    if (this.#held) {
      this.#held.push(msg);
      return;
    }
    this.#lastActive = performance.now();
    const reply = msg.reply ?? "";
    if (!reply.startsWith("$JS.ACK.")) {
      let code = 0;
      try {
        code = msg.headers?.code ?? 0;
        if (code === 100) {
          if (reply) msg.respond(); // flow control
          const stalled = msg.headers?.get("Nats-Consumer-Stalled");
          if (stalled) this.#conn.nc.publish(stalled);
          // an idle heartbeat names the last delivery: one we did not see was lost
          const last = Number(msg.headers?.get("Nats-Last-Consumer") || 0);
          if (last >= this.#expected) this.restart("gap");
          return;
        }
      } catch {
        // malformed: ignore
      }
      if (code >= 400) this.restart("consumer gone");
      return;
    }
    // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>, or the v2 form
    // with <domain>.<account hash> after ACK and a random token at the end
    const t = reply.split(".");
    const o = t.length >= 12 ? 4 : 2;
    const sseq = Number(t[o + 3]);
    const dseq = Number(t[o + 4]);
    if (dseq !== this.#expected) return this.restart("gap");
    this.#expected++;
    if (sseq <= this.#lastSeq) return; // replayed after a restart
    this.#lastSeq = sseq;
    let operation: KvEntry["operation"] = "PUT";
    try {
      const op = msg.headers?.get("KV-Operation");
      if (op === "DEL" || op === "PURGE") operation = op;
    } catch {
      // malformed headers: a put
    }
    const inInitial = this.#initialLeft > 0;
    if (inInitial) this.#initialLeft--;
    if (inInitial && operation !== "PUT") return; // deleted keys are not "existing"
    const entry: KvEntry = {
      key: msg.subject.slice(this.#prefix.length),
      value: operation === "PUT" ? msg.data : EMPTY,
      revision: sseq,
      operation,
    };
    this.#queue.push(entry);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#gen++;
    clearInterval(this.#timer);
    this.#stopSleep.abort();
    this.#conn.watches.delete(this);
    try {
      this.#sub?.unsubscribe();
    } catch {
      // closed already
    }
    this.#queue.stop(true);
  }

  [Symbol.asyncIterator](): AsyncIterator<KvEntry> {
    return this.#queue[Symbol.asyncIterator]();
  }
}
