/**
 * An actor's history as users read it (`system.history()`, the dashboard's inspector): its
 * stored events, in order, decoded and upcast to the current version of their type. Upcasting
 * is the same step replay takes when an activation rebuilds its state.
 *
 * @module
 */

import { ClosedError, InternalError } from "../errors.ts";
import type { Journal } from "./types.ts";

/** An event read back from an actor's log. */
export interface HistoryEvent<E = unknown> {
  /** Position in the log. */
  readonly seq: number;
  /** Event type. */
  readonly type: string;
  /** Payload, upcast to the current version. */
  readonly payload: E;
  /** When it was appended. */
  readonly at: Date;
}

/** The event versions of a type: an actor definition has them (`defineActor`). */
export interface EventVersions {
  /** Current version per event type (1 when not listed). */
  readonly eventVersions: Readonly<Record<string, number>>;
  /** Per event type, `upcasters[v]` turns version `v` into `v + 1`. */
  readonly upcasters: Readonly<Record<string, Readonly<Record<number, (p: unknown) => unknown>>>>;
}

/** Applies the upcasters from `version` to the type's current version. */
export function upcast(
  versions: EventVersions,
  type: string,
  version: number,
  payload: unknown,
): unknown {
  const chain = versions.upcasters[type];
  const current = versions.eventVersions[type] ?? 1;
  let p = payload;
  for (let v = version; v < current; v++) {
    const up = chain?.[v];
    if (!up) throw new InternalError(`No upcaster for event "${type}" from version ${v}`);
    p = up(p);
  }
  return p;
}

/** Events read per journal call. */
const PAGE = 500;

/**
 * The events of actor `key` (`type/id`) from seq `from` on, a page at a time, each decoded
 * with `decode` and upcast with `versions`. Throws `closed` when `closed()` says so before a
 * page is read.
 */
export async function* readHistory(
  journal: Journal,
  key: string,
  versions: EventVersions,
  options: { from?: number; decode(data: Uint8Array): unknown; closed(): boolean },
): AsyncIterable<HistoryEvent> {
  let next = Math.max(1, options.from ?? 1);
  for (;;) {
    if (options.closed()) throw new ClosedError("The system is closed");
    const page = await journal.read(key, next, PAGE);
    for (const e of page) {
      const payload = upcast(versions, e.type, e.version, options.decode(e.data));
      yield { seq: e.seq, type: e.type, payload, at: new Date(e.at) };
    }
    if (page.length < PAGE) return;
    next = page[page.length - 1]!.seq + 1;
  }
}
