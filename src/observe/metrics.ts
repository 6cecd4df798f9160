/**
 * Troupe's OpenTelemetry metrics: the instruments, created once per process on the global
 * meter provider (Deno's built-in one with `OTEL_DENO=true`), and the attribute sets they
 * record with, built once per actor type, handler and outcome and reused, so that recording
 * allocates nothing in the steady state.
 *
 * | name | kind | unit | attributes |
 * | --- | --- | --- | --- |
 * | `troupe.ask.duration` | histogram | s | `troupe.actor.type`, `troupe.handler`, `outcome` (`ok`/`error`), `error.type`, `troupe.node` |
 * | `troupe.errors` | counter | | `error.type`, `troupe.actor.type`, `troupe.handler`, `troupe.message.kind`, `troupe.node` |
 * | `troupe.activations` | up-down counter (observed) | | `troupe.actor.type`, `troupe.node` |
 * | `troupe.mailbox.depth` | gauge (observed) | | `troupe.actor.type`, `troupe.node` |
 * | `troupe.journal.commit.duration` | histogram | s | `troupe.actor.type`, `troupe.node` |
 * | `troupe.journal.appends` | counter | | `troupe.actor.type`, `troupe.node` |
 * | `troupe.projection.lag` | gauge (observed) | s | `troupe.projection`, `troupe.node` (the node that runs it) |
 *
 * @module
 */

import {
  type Attributes,
  type Counter,
  type Histogram,
  metrics,
  type ObservableResult,
} from "@opentelemetry/api";
import { ATTR } from "./tracing.ts";

/**
 * Whether a meter provider is registered with the OpenTelemetry API in this process (Deno's
 * own with `OTEL_DENO=true`, or an SDK's).
 */
export function metricsOn(): boolean {
  const api = (globalThis as Record<symbol, { metrics?: unknown } | undefined>)[
    Symbol.for("opentelemetry.js.api.1")
  ];
  return api?.metrics !== undefined;
}

/** Upper bounds of the duration histograms' buckets, in seconds (0.5 ms to 30 s). */
export const DURATION_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
];

/** Counts of one actor type on one node, for the observed instruments. */
export interface TypeGauge {
  /** Actor type. */
  readonly type: string;
  /** Active activations (for a worker type: messages running). */
  readonly activations: number;
  /** Messages waiting in mailboxes (worker queues). */
  readonly queued: number;
}

/** A projection, as the observed instruments and the node's stats see it. */
export interface ProjectionGauge {
  /** Its name. */
  readonly name: string;
  /** Whether this node runs it now. */
  readonly running: boolean;
  /** How far behind the journal it is, ms (see `Projection.lag`). */
  readonly lag: number;
  /** The position of the last event it handled here. */
  readonly position: string | undefined;
}

/** A node whose counts the observed instruments report. */
export interface GaugeSource {
  /** The node id. */
  readonly node: string;
  /** The counts per type, now. */
  gauges(): Iterable<TypeGauge>;
  /** The projections started on the node (reported while they run there). */
  projections?(): Iterable<ProjectionGauge>;
}

/** The instruments of this process. */
export interface Instruments {
  readonly askDuration: Histogram;
  readonly errors: Counter;
  readonly commitDuration: Histogram;
  readonly appends: Counter;
  /** Nodes whose activations and mailboxes are observed. */
  readonly sources: Set<GaugeSource>;
}

let instruments: Instruments | undefined;

/** The instruments, created on first use. */
export function getInstruments(): Instruments {
  if (instruments) return instruments;
  const meter = metrics.getMeter("troupe");
  const advice = { explicitBucketBoundaries: DURATION_BUCKETS };
  const sources = new Set<GaugeSource>();
  const activations = meter.createObservableUpDownCounter("troupe.activations", {
    description: "Active actors (activations) per type on the node",
  });
  const depth = meter.createObservableGauge("troupe.mailbox.depth", {
    description: "Messages waiting in the mailboxes of a type's actors on the node",
  });
  const observe = (pick: (g: TypeGauge) => number) => (result: ObservableResult) => {
    for (const source of sources) {
      for (const g of source.gauges()) {
        result.observe(pick(g), { [ATTR.type]: g.type, [ATTR.node]: source.node });
      }
    }
  };
  activations.addCallback(observe((g) => g.activations));
  depth.addCallback(observe((g) => g.queued));
  meter.createObservableGauge("troupe.projection.lag", {
    description: "How far behind the journal a projection is (0 once it has handled every event)",
    unit: "s",
  }).addCallback((result) => {
    for (const source of sources) {
      for (const p of source.projections?.() ?? []) {
        if (p.running) {
          result.observe(p.lag / 1000, { [ATTR.projection]: p.name, [ATTR.node]: source.node });
        }
      }
    }
  });
  return instruments = {
    askDuration: meter.createHistogram("troupe.ask.duration", {
      description: "Time from sending an ask to its reply or error, as the caller saw it",
      unit: "s",
      advice,
    }),
    errors: meter.createCounter("troupe.errors", {
      description: "Calls (ask, tell, stream) that ended with an error, as their callers saw it",
    }),
    commitDuration: meter.createHistogram("troupe.journal.commit.duration", {
      description: "Time from a turn's journal append to its durable commit",
      unit: "s",
      advice,
    }),
    appends: meter.createCounter("troupe.journal.appends", {
      description: "Events appended to the journal",
    }),
    sources,
  };
}

/** Most attribute sets kept; past it they are built per recording (a runaway of names). */
const MAX_CACHED = 4096;

/**
 * Attribute sets per (type, handler, outcome), built once: recording an ask's duration or an
 * error then allocates nothing.
 */
export class AttributeCache {
  readonly #node: string;
  readonly #byType = new Map<string, Map<string, Map<string, Attributes>>>();
  readonly #types = new Map<string, Attributes>();
  #size = 0;

  /** @param node The node id every set carries. */
  constructor(node: string) {
    this.#node = node;
  }

  /**
   * The attributes of an outcome of `type.handler`: `ok`, or an error code; `kind` adds the
   * message kind.
   */
  get(type: string, handler: string, outcome: string, kind?: string): Attributes {
    let handlers = this.#byType.get(type);
    if (!handlers) this.#byType.set(type, handlers = new Map());
    let outcomes = handlers.get(handler);
    if (!outcomes) handlers.set(handler, outcomes = new Map());
    const key = kind === undefined ? outcome : `${outcome}\0${kind}`;
    let attrs = outcomes.get(key);
    if (attrs) return attrs;
    attrs = {
      [ATTR.type]: type,
      [ATTR.handler]: handler,
      [ATTR.node]: this.#node,
      [ATTR.outcome]: outcome === "ok" ? "ok" : "error",
      ...(outcome === "ok" ? {} : { [ATTR.error]: outcome }),
      ...(kind === undefined ? {} : { [ATTR.kind]: kind }),
    };
    if (this.#size < MAX_CACHED) {
      outcomes.set(key, attrs);
      this.#size++;
    }
    return attrs;
  }

  /** The attributes of a type alone (journal metrics). */
  type(type: string): Attributes {
    let attrs = this.#types.get(type);
    if (attrs) return attrs;
    attrs = { [ATTR.type]: type, [ATTR.node]: this.#node };
    if (this.#types.size < MAX_CACHED) this.#types.set(type, attrs);
    return attrs;
  }
}
