/**
 * The append groups of a batch in one flat buffer, for the trip to the database thread: a
 * structured clone of the same objects (one per group, event and payload) costs several times
 * more on the sending thread, and the buffer is transferred, not copied.
 *
 * Layout (little-endian): `u32 groups`, then per group: `str actor, f64 epoch, f64 expectedSeq,
 * u32 events, [str type, u32 version, bytes data, f64 at]…, u8 snapshot?, [f64 seq, u32 version,
 * bytes state], u32 replies, [str key, str fingerprint, bytes reply]…, u32 reminders, [str id,
 * str actor, str handler, bytes data, f64 due, u8 optional fields (1 cron, 2 name, 4 trace,
 * 8 caller), str cron?, str name?, str trace?, bytes caller?]…, u32 cancels, [str id]…, u32
 * outbox, [str id, str topic, bytes data, str contentType, f64 at]…`. `str` and `bytes` are
 * `u32 length` + bytes.
 *
 * @module
 */

import type {
  Append,
  IdempotencyRecord,
  NewEvent,
  OutboxMessage,
  Reminder,
  Snapshot,
} from "../../spi.ts";
import type { AppendGroup } from "./_sql.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

class Writer {
  #buf: Uint8Array;
  #view: DataView;
  #at = 0;

  constructor(size: number) {
    this.#buf = new Uint8Array(size);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Starts again at the beginning (the buffer is kept). */
  reset(): void {
    this.#at = 0;
  }

  /** The size of the buffer. */
  get capacity(): number {
    return this.#buf.length;
  }

  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#at + n));
    next.set(this.#buf.subarray(0, this.#at));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.#room(1);
    this.#buf[this.#at++] = v;
  }

  u32(v: number): void {
    this.#room(4);
    this.#view.setUint32(this.#at, v, true);
    this.#at += 4;
  }

  f64(v: number): void {
    this.#room(8);
    this.#view.setFloat64(this.#at, v, true);
    this.#at += 8;
  }

  str(s: string): void {
    // At most 3 bytes per UTF-16 unit.
    this.#room(4 + s.length * 3);
    const buf = this.#buf;
    const start = this.#at + 4;
    // Short ASCII strings (actor keys, event types) byte by byte: cheaper than a view and
    // encodeInto() per string.
    let i = 0;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[start + i] = c;
    }
    const written = i === s.length ? i : enc.encodeInto(s, buf.subarray(start)).written;
    this.#view.setUint32(this.#at, written, true);
    this.#at = start + written;
  }

  bytes(b: Uint8Array): void {
    this.#room(4 + b.length);
    this.#view.setUint32(this.#at, b.length, true);
    this.#buf.set(b, this.#at + 4);
    this.#at += 4 + b.length;
  }

  /** The bytes written, in a buffer of their own (to transfer). */
  done(): Uint8Array {
    return this.#buf.slice(0, this.#at);
  }
}

class Reader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  #at = 0;

  constructor(buf: Uint8Array) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  u8(): number {
    return this.#buf[this.#at++]!;
  }

  u32(): number {
    const v = this.#view.getUint32(this.#at, true);
    this.#at += 4;
    return v;
  }

  f64(): number {
    const v = this.#view.getFloat64(this.#at, true);
    this.#at += 8;
    return v;
  }

  str(): string {
    const n = this.u32();
    const buf = this.#buf;
    const at = this.#at;
    this.#at += n;
    // Short ASCII strings (actor keys, event types) without the decoder's op.
    if (n <= 64) {
      let i = at;
      while (i < at + n && buf[i]! < 0x80) i++;
      if (i === at + n) {
        return String.fromCharCode.apply(null, buf.subarray(at, i) as unknown as number[]);
      }
    }
    return dec.decode(buf.subarray(at, at + n));
  }

  /** A view into the buffer (not a copy). */
  bytes(): Uint8Array {
    const n = this.u32();
    const b = this.#buf.subarray(this.#at, this.#at + n);
    this.#at += n;
    return b;
  }
}

/** The writer {@link encodeGroups} reuses (its buffer only grows; each batch is copied out). */
let shared: Writer | undefined;

/**
 * Encodes groups of appends: each group's appends (one actor and epoch, each continuing the
 * previous one) become one group: their events in order, the last snapshot, every reply and
 * reminder. A group is given by its first item and `nextOf`, which gives the item after one
 * (undefined at the end); `appendOf` picks the append of an item (pending writes are encoded as
 * they are, without a list per group).
 */
export function encodeGroups<T>(
  groups: readonly T[],
  appendOf: (item: T) => Append,
  nextOf: (item: T) => T | undefined,
): Uint8Array {
  const w = shared ??= new Writer(64 * 1024);
  w.reset();
  w.u32(groups.length);
  for (const head of groups) {
    const first = appendOf(head);
    w.str(first.actor);
    w.f64(first.epoch);
    w.f64(first.expectedSeq);
    let events = 0;
    let replies = 0;
    let outbox = 0;
    let snapshot: Snapshot | undefined;
    // Reminders scheduled and cancelled along the appends, in their order: the last word on
    // each id wins (scheduled, or cancelled). Most groups have none: no map for them.
    let reminders: Map<string, Reminder | null> | undefined;
    for (let item: T | undefined = head; item !== undefined; item = nextOf(item)) {
      const a = appendOf(item);
      events += a.events.length;
      if (a.idempotency) replies++;
      if (a.outbox) outbox += a.outbox.length;
      if (a.snapshot) snapshot = a.snapshot;
      if (a.cancelReminders) {
        for (const id of a.cancelReminders) {
          (reminders ??= new Map()).delete(id);
          reminders.set(id, null);
        }
      }
      if (a.reminders) {
        for (const r of a.reminders) {
          (reminders ??= new Map()).delete(r.id);
          reminders.set(r.id, r);
        }
      }
    }
    w.u32(events);
    for (let item: T | undefined = head; item !== undefined; item = nextOf(item)) {
      const evs = appendOf(item).events;
      for (let k = 0; k < evs.length; k++) {
        const e = evs[k]!;
        w.str(e.type);
        w.u32(e.version);
        w.bytes(e.data);
        w.f64(e.at);
      }
    }
    if (snapshot) {
      w.u8(1);
      w.f64(snapshot.seq);
      w.u32(snapshot.version);
      w.bytes(snapshot.state);
    } else w.u8(0);
    w.u32(replies);
    if (replies > 0) {
      for (let item: T | undefined = head; item !== undefined; item = nextOf(item)) {
        const r = appendOf(item).idempotency;
        if (!r) continue;
        w.str(r.key);
        w.str(r.fingerprint);
        w.bytes(r.reply);
      }
    }
    const scheduled = reminders ? [...reminders.values()].filter((r) => r !== null) : [];
    w.u32(scheduled.length);
    for (const r of scheduled) {
      w.str(r.id);
      w.str(r.actor);
      w.str(r.handler);
      w.bytes(r.data);
      w.f64(r.due);
      w.u8(
        (r.cron !== undefined ? 1 : 0) | (r.name !== undefined ? 2 : 0) |
          (r.trace !== undefined ? 4 : 0) | (r.caller !== undefined ? 8 : 0),
      );
      if (r.cron !== undefined) w.str(r.cron);
      if (r.name !== undefined) w.str(r.name);
      if (r.trace !== undefined) w.str(r.trace);
      if (r.caller !== undefined) w.bytes(r.caller);
    }
    const cancelled = reminders
      ? [...reminders].filter(([, r]) => r === null).map(([id]) => id)
      : [];
    w.u32(cancelled.length);
    for (const id of cancelled) w.str(id);
    w.u32(outbox);
    if (outbox > 0) {
      for (let item: T | undefined = head; item !== undefined; item = nextOf(item)) {
        for (const m of appendOf(item).outbox ?? []) {
          w.str(m.id);
          w.str(m.topic);
          w.bytes(m.data);
          w.str(m.contentType);
          w.f64(m.at);
        }
      }
    }
  }
  const out = w.done();
  // a batch far larger than usual does not keep its buffer for ever
  if (w.capacity > 4 * 1024 * 1024) shared = undefined;
  return out;
}

/**
 * {@link encodeGroups} for groups given as lists of appends (tests, benchmarks).
 *
 * @example
 * ```ts ignore
 * encodeAppendLists([[{ actor: "a/1", epoch: 1, expectedSeq: 0, events: [] }]]);
 * ```
 */
export function encodeAppendLists(lists: readonly (readonly Append[])[]): Uint8Array {
  type Node = { append: Append; next: Node | undefined };
  const heads = lists.map((list) => {
    let next: Node | undefined;
    for (let i = list.length - 1; i >= 0; i--) next = { append: list[i]!, next };
    return next!;
  });
  return encodeGroups(heads, (n) => n.append, (n) => n.next);
}

/** What most groups have none of: one frozen empty list for all of them. */
const NONE: readonly never[] = Object.freeze([]);

/** Decodes what {@link encodeGroups} wrote (payloads are views into `buf`). */
export function decodeGroups(buf: Uint8Array): AppendGroup[] {
  const r = new Reader(buf);
  const out: AppendGroup[] = [];
  for (let n = r.u32(); n > 0; n--) {
    const actor = r.str();
    const epoch = r.f64();
    const expectedSeq = r.f64();
    const events: NewEvent[] = [];
    for (let k = r.u32(); k > 0; k--) {
      events.push({ type: r.str(), version: r.u32(), data: r.bytes(), at: r.f64() });
    }
    const snapshot: Snapshot | undefined = r.u8() === 1
      ? { seq: r.f64(), version: r.u32(), state: r.bytes() }
      : undefined;
    // A part the group has none of is the one frozen empty list (most groups have none).
    let k = r.u32();
    const idempotency: IdempotencyRecord[] = k === 0 ? NONE as never : [];
    for (; k > 0; k--) {
      idempotency.push({ key: r.str(), fingerprint: r.str(), reply: r.bytes() });
    }
    k = r.u32();
    const reminders: Reminder[] = k === 0 ? NONE as never : [];
    for (; k > 0; k--) {
      const id = r.str(), actor = r.str(), handler = r.str(), data = r.bytes(), due = r.f64();
      const flags = r.u8();
      const reminder: { -readonly [K in keyof Reminder]: Reminder[K] } = {
        id,
        actor,
        handler,
        data,
        due,
      };
      if (flags & 1) reminder.cron = r.str();
      if (flags & 2) reminder.name = r.str();
      if (flags & 4) reminder.trace = r.str();
      if (flags & 8) reminder.caller = r.bytes();
      reminders.push(reminder);
    }
    k = r.u32();
    const cancels: string[] = k === 0 ? NONE as never : [];
    for (; k > 0; k--) cancels.push(r.str());
    k = r.u32();
    const outbox: OutboxMessage[] = k === 0 ? NONE as never : [];
    for (; k > 0; k--) {
      outbox.push({
        id: r.str(),
        topic: r.str(),
        data: r.bytes(),
        contentType: r.str(),
        at: r.f64(),
      });
    }
    // (fields set one by one: a spread of `{}` would make an object per group)
    const group: { -readonly [K in keyof AppendGroup]: AppendGroup[K] } = {
      actor,
      epoch,
      expectedSeq,
      events,
      idempotency,
      reminders,
      cancels,
      outbox,
    };
    if (snapshot) group.snapshot = snapshot;
    out.push(group);
  }
  return out;
}
