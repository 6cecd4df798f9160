/**
 * Projections: a handler fed every event of some actor types in order, with its position
 * checkpointed, running on one node of the cluster at a time (a leader election), resuming
 * after its last checkpoint when it restarts or moves to another node.
 *
 * Delivery is at least once: the checkpoint is written after the handler returned, so an event
 * handled just before a crash (or a lost lease) is handled again by the next runner. A handler
 * that writes by key (`store.set(e.id, …)`) therefore keeps each event once in its store. The
 * checkpoint is a compare-and-set on its record, so a runner that lost its lease stops at its
 * next checkpoint instead of running beside its successor.
 *
 * @module
 */

import type { Codec } from "../codec/types.ts";
import type { ElectOptions, Leader, Lease } from "../directory/types.ts";
import type { Journal } from "../journal/types.ts";
import type { Store } from "../store/types.ts";
import type { Logger } from "./envelope.ts";
import type { ActorDefinition } from "./define.ts";
import { type FeedEvent, readFeed } from "./feed.ts";
import { delay } from "../util/async.ts";
import type { Clock, TimerId } from "../util/clock.ts";
import type { ProjectionGauge } from "../observe/metrics.ts";

/** Options of `system.projection()`. */
export interface ProjectionOptions {
  /** The actor types whose events it reads. */
  // deno-lint-ignore no-explicit-any
  from: readonly ActorDefinition<any>[];
  /** Handles one event; the next one comes once it resolved. A throw is retried (backoff). */
  handle(event: FeedEvent): void | Promise<void>;
  /** How often a caught-up projection looks for new events, ms. @default {200} */
  pollMs?: number;
}

/** A running projection (on this node or, when another node leads it, waiting). */
export interface Projection {
  /** Its name. */
  readonly name: string;
  /** The position of the last event handled here (undefined before the first). */
  readonly position: string | undefined;
  /**
   * How far behind the journal it is, in ms, on the node that runs it: 0 once its last look
   * (every `pollMs`) found no event it had not handled, else the time since the event it is at
   * (the one being handled, or the last one handled while it reads on) was committed. It grows
   * while a handler is stuck. 0 on a node that does not run it, and before its first read.
   * (Milliseconds because they are cheap: counting the events behind would read the journal.)
   * Reported as the `troupe.projection.lag` metric and in `system.cluster.stats()`.
   */
  readonly lag: number;
  /** Whether this node runs it now (it holds the projection's lease). */
  readonly running: boolean;
  /** Stops it on this node (another node may take it over). */
  stop(): Promise<void>;
}

/** What a projection needs from its node. */
export interface ProjectionHost {
  readonly journal: Journal;
  readonly storage: Codec;
  readonly log: Logger;
  /** The node's clock (retry waits, live polling). */
  readonly clock: Clock;
  /** Where checkpoints are kept (one record per projection). */
  readonly checkpoints: Store<string>;
  elect(name: string, options: ElectOptions): Leader;
  /** Reports the projection to the node's observer (metrics, stats); returns its removal. */
  observe?(projection: ProjectionGauge): () => void;
}

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 30_000;
/** How long `stop()` waits for the event being handled. */
const STOP_BOUND_MS = 1_000;

/** Starts projection `name` on this node (see the module doc). */
export function startProjection(
  host: ProjectionHost,
  name: string,
  options: ProjectionOptions,
): Projection {
  if (typeof name !== "string" || !/^[A-Za-z0-9_.:-]{1,128}$/.test(name)) {
    throw new TypeError(`A projection's name is 1 to 128 of [A-Za-z0-9_.:-], got "${name}"`);
  }
  if (!Array.isArray(options.from) || options.from.length === 0) {
    throw new TypeError(`Projection "${name}" needs the actor types it reads in "from"`);
  }
  if (typeof options.handle !== "function") {
    throw new TypeError(`Projection "${name}" needs a handle(event) function`);
  }
  let position: string | undefined;
  /** Commit time of the event it is at (ms since the epoch); undefined once caught up. */
  let behindSince: number | undefined;
  let run: AbortController | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  const pollMs = options.pollMs ?? 200;

  const loop = async (lease: Lease, signal: AbortSignal) => {
    const cp = await host.checkpoints.get(name);
    let revision = cp?.revision ?? 0;
    position = cp?.value;
    let attempt = 0;
    // Rounds of the stored events (a feed that ends once caught up), so that it knows when it
    // is: that is when its lag is 0.
    for (; !signal.aborted; await delay(host.clock, pollMs, signal).catch(() => {})) {
      for await (
        const e of readFeed(host.journal, host.storage, options.from, {
          ...(position !== undefined ? { after: position } : {}),
          signal,
          live: false,
        })
      ) {
        behindSince = e.at.getTime();
        for (;;) {
          if (signal.aborted || lease.signal.aborted) return;
          try {
            await options.handle(e);
            break;
          } catch (err) {
            const wait = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** attempt++);
            host.log.warn(
              `Projection "${name}" failed on ${e.actorType}/${e.id}#${e.seq}; retrying`,
              {
                error: String(err),
                retryInMs: wait,
              },
            );
            await delay(host.clock, wait, signal).catch(() => {});
          }
        }
        attempt = 0;
        // Compare-and-set: a runner that lost its lease to another stops here.
        const written = await host.checkpoints.set(name, e.position, { ifRevision: revision });
        revision = written.revision;
        position = e.position;
      }
      if (!signal.aborted) behindSince = undefined; // caught up
    }
  };

  const leader = host.elect(`troupe-projection-${name}`, {
    onElected(lease) {
      if (stopped) return;
      const controller = run = new AbortController();
      lease.signal.addEventListener("abort", () => controller.abort(), { once: true });
      running = (async () => {
        // A failure (a journal read, a checkpoint write) starts it again from its checkpoint.
        for (let attempt = 0; !controller.signal.aborted; attempt++) {
          try {
            return await loop(lease, controller.signal);
          } catch (err) {
            if (controller.signal.aborted) return;
            const wait = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** attempt);
            host.log.warn(`Projection "${name}" failed; it resumes from its checkpoint`, {
              error: String(err),
              retryInMs: wait,
            });
            await delay(host.clock, wait, controller.signal).catch(() => {});
          }
        }
      })().finally(() => {
        if (run === controller) run = undefined;
        behindSince = undefined;
      });
    },
    onRevoked() {
      run?.abort();
    },
  });

  const projection: Projection = {
    name,
    get position() {
      return position;
    },
    get lag() {
      return behindSince === undefined || !projection.running
        ? 0
        : Math.max(0, host.clock.now() - behindSince);
    },
    get running() {
      return run !== undefined && leader.isLeader;
    },
    async stop() {
      stopped = true;
      unobserve?.();
      run?.abort();
      // A handler that never returns cannot be cancelled: wait for it a bounded while only.
      let timer: TimerId | undefined;
      await Promise.race([
        running,
        new Promise<void>((r) => timer = host.clock.setTimeout(() => r(), STOP_BOUND_MS)),
      ]);
      host.clock.clearTimeout(timer);
      await leader.resign();
    },
  };
  const unobserve = host.observe?.(projection);
  return projection;
}
