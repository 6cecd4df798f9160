/**
 * Floods on one in-process node (in-process mesh, in-memory journal), shared by
 * `tests/chaos/flood_test.ts` and `bench/chaos.ts`:
 *
 * - {@link mailboxFlood}: 10x an actor's `mailboxSize` sent to it at once. The excess is
 *   refused with `overloaded` at once, the rest is answered, the heap stays bounded, and other
 *   actors' asks are not held behind the flooded actor's backlog: counted in the flooded
 *   actor's turns that ran while each of them waited (what the node decides), and timed
 *   (p50, p99) against a baseline measured in the same run (what the machine also decides).
 * - {@link activationFlood}: asks to 100k random ids against `maxActivations` 10k: the heap
 *   after them is compared with the heap after the first 10k (memory flat). Run it in a
 *   process started with `--v8-flags=--expose-gc` (see ./flood_child.ts) so that the heap
 *   is measured after a full collection.
 *
 * @module
 */
import { ActorError, createSystem, defineActor, type System } from "../../mod.ts";

/**
 * The flooded actor: each message waits `ms` for something outside (a timer standing in for
 * I/O), so messages queue behind the running one. (A synchronous handler with nothing to
 * commit runs inline in a local `ask()`, so a local sender cannot queue messages for it.)
 */
const Hot = defineActor({
  name: "hot",
  initialState: () => ({ n: 0 }),
  handlers: {
    async work(ctx, ms: number) {
      await new Promise((r) => setTimeout(r, ms));
      ctx.state = { n: ctx.state.n + 1 };
      hotTurns++;
      return ctx.state.n;
    },
  },
  mailboxSize: 1000,
});

/** Turns of the flooded actor so far (in this process). */
let hotTurns = 0;

/** The bystanders: a cheap ask each. */
const Other = defineActor({
  name: "other",
  initialState: () => ({ n: 0 }),
  handlers: {
    ping(ctx) {
      ctx.state = { n: ctx.state.n + 1 };
      return ctx.state.n;
    },
  },
});

/** An in-memory cell (no events): what 100k random ids activate. */
const Cell = defineActor({
  name: "cell",
  initialState: () => ({ hits: 0 }),
  handlers: {
    read(ctx) {
      ctx.state = { hits: ctx.state.hits + 1 };
      return ctx.state.hits;
    },
  },
});

/** What {@link mailboxFlood} measured. */
export interface MailboxFloodResult {
  /** Messages sent to the one actor at once. */
  sent: number;
  /** Its `mailboxSize`. */
  mailboxSize: number;
  /** Answered by the handler. */
  answered: number;
  /** Refused with `overloaded`. */
  overloaded: number;
  /** Any other outcome, by code. */
  other: Record<string, number>;
  /** How long until every one of them was settled, ms. */
  settledMs: number;
  /** How long until the last `overloaded` refusal, after the send started, ms. */
  lastRefusalMs: number;
  /** How long the loop sending them took, ms. */
  sendMs: number;
  /** Heap growth while the flood was queued, bytes. */
  heapGrowth: number;
  /** Other actors' ask latency without the flood: p50 / p99, ms. */
  baseline: { p50: number; p99: number; n: number };
  /** The same asks while the flooded actor's mailbox drains: p50 / p99, ms. */
  underFlood: { p50: number; p99: number; n: number };
  /**
   * The flooded actor's turns that ran while one of those asks waited: p99 and max. An ask
   * queued behind the backlog would wait for hundreds; a machine that stalls the process
   * changes times, not this count.
   */
  overtaken: { p99: number; max: number };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

/**
 * `concurrency` loops of asks to `others` until `until()`; returns each one's latency (ms)
 * and how many turns of the flooded actor ran while it waited.
 */
async function pings(
  system: System,
  ids: string[],
  concurrency: number,
  until: () => boolean,
): Promise<{ lat: number[]; overtaken: number[] }> {
  const lat: number[] = [];
  const overtaken: number[] = [];
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    for (let i = w; !until(); i += concurrency) {
      const t0 = performance.now();
      const h0 = hotTurns;
      await system.ref(Other, ids[i % ids.length]!).ask("ping");
      lat.push(performance.now() - t0);
      overtaken.push(hotTurns - h0);
      // a macrotask between asks: a steady load, not a microtask storm
      await new Promise((r) => setTimeout(r, 0));
    }
  }));
  return { lat, overtaken };
}

/**
 * Sends `factor` x `mailboxSize` asks at once to one actor whose handler waits `workMs` each,
 * then, while its mailbox drains, asks bystander actors in a steady loop; compares their
 * latency with a baseline measured just before in the same run.
 */
export async function mailboxFlood(
  options: { factor?: number; workMs?: number; phaseMs?: number } = {},
): Promise<MailboxFloodResult> {
  const factor = options.factor ?? 10;
  const workMs = options.workMs ?? 1;
  const phaseMs = options.phaseMs ?? 1500;
  const system = await createSystem({ actors: [Hot, Other], logger: "error" });
  try {
    const ids = Array.from({ length: 50 }, (_, i) => `o${i}`);
    const hot = system.ref(Hot, "hot");
    await hot.ask("work", 0);
    await pings(
      system,
      ids,
      10,
      (() => {
        const end = performance.now() + 300;
        return () => performance.now() > end;
      })(),
    ); // warm-up
    let end = performance.now() + phaseMs;
    const { lat: base } = await pings(system, ids, 10, () => performance.now() > end);

    const mailboxSize = 1000;
    const sent = factor * mailboxSize;
    const outcomes: Record<string, number> = {};
    let lastRefusal = 0;
    const heap0 = Deno.memoryUsage().heapUsed;
    const t0 = performance.now();
    const calls: Promise<void>[] = [];
    for (let i = 0; i < sent; i++) {
      calls.push(
        hot.ask("work", workMs, { timeout: 60_000 }).then(
          () => void (outcomes.ok = (outcomes.ok ?? 0) + 1),
          (err) => {
            const c = err instanceof ActorError ? err.code : String(err);
            outcomes[c] = (outcomes[c] ?? 0) + 1;
            if (c === "overloaded") lastRefusal = performance.now() - t0;
          },
        ),
      );
    }
    const sendMs = performance.now() - t0;
    const heapGrowth = Deno.memoryUsage().heapUsed - heap0;
    // The bystanders while the mailbox drains (it holds mailboxSize x workMs of waiting).
    let drained = false;
    const all = Promise.all(calls).then(() => void (drained = true));
    end = performance.now() + phaseMs;
    const { lat: during, overtaken } = await pings(
      system,
      ids,
      10,
      () => drained || performance.now() > end,
    );
    await all;
    const settledMs = performance.now() - t0;
    const { ok = 0, overloaded = 0, ...other } = outcomes;
    return {
      sent,
      mailboxSize,
      answered: ok,
      overloaded,
      other,
      settledMs,
      lastRefusalMs: lastRefusal,
      sendMs,
      heapGrowth,
      baseline: { p50: quantile(base, 0.5), p99: quantile(base, 0.99), n: base.length },
      underFlood: { p50: quantile(during, 0.5), p99: quantile(during, 0.99), n: during.length },
      overtaken: { p99: quantile(overtaken, 0.99), max: Math.max(0, ...overtaken) },
    };
  } finally {
    await system.close();
  }
}

/** What {@link activationFlood} measured (heap after a full GC when `gc` is exposed). */
export interface ActivationFloodResult {
  maxActivations: number;
  /** Asks to random ids after the first `maxActivations`. */
  randomIds: number;
  /** Heap of the started node before any activation, bytes. */
  heapEmpty: number;
  /** Heap after `maxActivations` distinct ids, bytes. */
  heapFull: number;
  /** Heap after `randomIds` more, bytes. */
  heapAfter: number;
  /** RSS at the same three points, bytes. */
  rss: [number, number, number];
  /** Whether the heap was measured after `gc()`. */
  gc: boolean;
  /** Asks that failed, by code. */
  failed: Record<string, number>;
  /** The first error of each code, as text. */
  firstErrors: string[];
  /** Asks per second during the random phase. */
  rate: number;
}

async function settle(): Promise<{ heap: number; rss: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 50));
    gc?.();
  }
  const m = Deno.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

/**
 * Activates `maxActivations` distinct actors, then asks `randomIds` random ids (each new, so
 * each needs an activation and evicts the least recently used idle one), measuring the heap
 * at each point.
 */
export async function activationFlood(
  options: { maxActivations?: number; randomIds?: number; concurrency?: number } = {},
): Promise<ActivationFloodResult> {
  const maxActivations = options.maxActivations ?? 10_000;
  const randomIds = options.randomIds ?? 100_000;
  const concurrency = options.concurrency ?? 64;
  const system = await createSystem({ actors: [Cell], maxActivations, logger: "error" });
  const failed: Record<string, number> = {};
  const firstErrors: string[] = [];
  const run = async (ids: (i: number) => string, n: number) => {
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      for (let k = 1; next < n; k++) {
        // requests arrive through I/O: a macrotask now and then, so that the node's own
        // timers (its lease heartbeat) run, as they would on a server. The timers run only once
        // every worker waits for its macrotask, so a round is concurrency × this many asks: at
        // 256 a round took ~4 s on a starved machine (16k asks at 4k/s) and the node's lease
        // (5 s) lapsed: it fenced itself and refused the asks as `unavailable`.
        if (k % 16 === 0) await new Promise((r) => setTimeout(r, 0));
        const id = ids(next++);
        try {
          await system.ref(Cell, id).ask("read");
        } catch (err) {
          const c = err instanceof ActorError ? err.code : String(err);
          if (failed[c] === undefined) firstErrors.push(String(err));
          failed[c] = (failed[c] ?? 0) + 1;
        }
      }
    }));
  };
  try {
    const empty = await settle();
    await run((i) => `fill-${i}`, maxActivations);
    const full = await settle();
    const t0 = performance.now();
    await run(() => crypto.randomUUID(), randomIds);
    const rate = randomIds / ((performance.now() - t0) / 1000);
    const after = await settle();
    return {
      maxActivations,
      randomIds,
      heapEmpty: empty.heap,
      heapFull: full.heap,
      heapAfter: after.heap,
      rss: [empty.rss, full.rss, after.rss],
      gc: typeof (globalThis as { gc?: unknown }).gc === "function",
      failed,
      firstErrors,
      rate,
    };
  } finally {
    await system.close();
  }
}
