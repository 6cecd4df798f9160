/**
 * Several Troupe nodes and a client in one test process, on the in-process mesh or on a
 * throw-away NATS cluster, sharing one journal.
 *
 * @module
 */

import {
  createSystem,
  inProcessMesh,
  memoryJournal,
  type System,
  type SystemOptions,
} from "../../mod.ts";
import type { Journal, Mesh } from "../../spi.ts";
import { natsMesh } from "../nats/mod.ts";
import { systemClock } from "../../spi.ts";
import type { NatsCluster } from "./nats_server.ts";

/** Options of {@link startSystems}. */
export interface StartSystemsOptions {
  /** The actor types every node hosts. */
  actors: NonNullable<SystemOptions["actors"]>;
  /** How many hosting nodes. @default {3} */
  nodes?: number;
  /**
   * The NATS cluster to connect to (see {@link startNatsCluster}); node `i` connects to
   * server `i mod servers`, the client to the first. Without it all run on one in-process
   * mesh.
   */
  nats?: NatsCluster;
  /**
   * The in-process mesh to run on, when you want a connection of your own to it (to read its
   * buckets, say). Not with `nats`. @default {a fresh inProcessMesh()}
   */
  mesh?: Mesh;
  /**
   * The journal every node writes to: a libSQL URL (each node opens its own connection) or
   * a journal object (shared; closed by `close()` only when this helper created it).
   * @default {a fresh memoryJournal()}
   */
  journal?: string | Journal;
  /**
   * Subject and bucket prefix on NATS. @default {a fresh `t<random>` for each call, so that
   * clusters started one after the other on one NATS cluster do not see each other}
   */
  prefix?: string;
  /** Heartbeat time to live of every node, ms (short values make failover tests fast). */
  leaseTtl?: number;
  /**
   * Further options given to every node and the client. With a `clock` (a `virtualClock()`),
   * the in-process mesh and the journal this helper makes run on it too.
   * @default {{ logger: "error" }}
   */
  system?: Omit<SystemOptions, "actors" | "mesh" | "journal" | "node" | "leaseTtl">;
  /** How long to wait for all nodes to see each other, ms. @default {10_000} */
  timeout?: number;
}

/** The nodes and client started by {@link startSystems}. */
export interface TestSystems extends AsyncDisposable {
  /** The hosting nodes, ids `node-0`, `node-1`, … */
  readonly nodes: readonly System[];
  /** A node that hosts nothing (`actors: []`), id `client`. */
  readonly client: System;
  /** The journal when it is an object (the default), else `undefined`. */
  readonly journal: Journal | undefined;
  /** Closes the client and every node that is still open, then the journal it created. */
  close(): Promise<void>;
}

/**
 * Starts `nodes` hosting nodes and a client, and waits until every one of them sees every
 * hosting node in its directory.
 *
 * @example
 * ```ts
 * import { defineActor } from "@troupe/troupe";
 * import { startNatsCluster, startSystems } from "@troupe/troupe/testing";
 *
 * const Counter = defineActor({
 *   name: "counter",
 *   initialState: () => ({ n: 0 }),
 *   events: { added: (s, e: { by: number }) => ({ n: s.n + e.by }) },
 *   handlers: {
 *     add(ctx, by: number) {
 *       ctx.emit("added", { by });
 *       return ctx.state.n;
 *     },
 *   },
 * });
 *
 * await using nats = await startNatsCluster({ servers: 3 });
 * await using cluster = await startSystems({ actors: [Counter], nats, leaseTtl: 1500 });
 * await cluster.client.ref(Counter, "a").ask("add", 2); // 2, from whichever node hosts it
 * ```
 */
export async function startSystems(options: StartSystemsOptions): Promise<TestSystems> {
  const count = options.nodes ?? 3;
  if (!(Number.isInteger(count) && count >= 1)) {
    throw new RangeError(`Cannot start systems: nodes must be a positive integer, got ${count}`);
  }
  const clock = options.system?.clock ?? systemClock;
  const ownJournal = options.journal === undefined ? memoryJournal({ now: clock.now }) : undefined;
  const journal = options.journal ?? ownJournal!;
  if (options.nats && options.mesh) {
    throw new TypeError("Cannot start systems on both a NATS cluster and a given mesh");
  }
  const shared = options.nats ? undefined : options.mesh ?? inProcessMesh({ clock });
  const ttl = options.leaseTtl === undefined ? {} : { leaseTtl: options.leaseTtl };
  const prefix = options.prefix ?? `t${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
  const meshFor = (i: number): Mesh => {
    const nats = options.nats;
    if (!nats) return shared!;
    return natsMesh({
      servers: nats.urls[i % nats.urls.length]!,
      prefix,
      ...ttl,
    });
  };
  const common = { logger: "error" as const, ...options.system };
  const started: System[] = [];
  const closeAll = async () => {
    await Promise.allSettled(started.splice(0).reverse().map((s) => s.close()));
    await ownJournal?.close();
  };
  try {
    for (let i = 0; i < count; i++) {
      started.push(
        await createSystem({
          ...common,
          actors: options.actors,
          mesh: meshFor(i),
          journal,
          node: `node-${i}`,
          ...ttl,
        }),
      );
    }
    const client = await createSystem({
      ...common,
      actors: [],
      mesh: meshFor(0),
      journal,
      node: "client",
      ...ttl,
    });
    started.push(client);
    const nodes = started.slice(0, count);
    const ids = nodes.map((s) => s.node);
    const timeout = options.timeout ?? 10_000;
    // Real time: nodes see each other through promises, whatever clock they run on.
    const deadline = systemClock.monotonic() + timeout;
    const seeAll = (s: System) => {
      const seen = new Set(s.directory.nodes().map((n) => n.id));
      return ids.every((id) => seen.has(id));
    };
    while (!started.every(seeAll)) {
      if (systemClock.monotonic() > deadline) {
        throw new Error(
          `Cannot start systems: the nodes did not all see each other within ${timeout} ms`,
        );
      }
      await new Promise<void>((r) => systemClock.setTimeout(() => r(), 10));
    }
    return {
      nodes,
      client,
      journal: typeof journal === "string" ? undefined : journal,
      close: closeAll,
      [Symbol.asyncDispose]: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
