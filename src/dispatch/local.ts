/**
 * Local delivery: the step where a call meets this node's activations and worker pools. It is
 * the single choke point every message passes before its handler runs, whether it came from a
 * local ref or over the mesh ({@link admit}). It also bounds how many actors are active here
 * (`maxActivations`: least recently used idle ones passivate first) and passivates idle ones.
 *
 * @module
 */

import { Activation, type ActivationHost, Redirect } from "../actor/activation.ts";
import type { OutboxMessage, Recovered } from "../journal/types.ts";
import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import type { Logger } from "../actor/envelope.ts";
import type { Dispatcher } from "../actor/ref.ts";
import { PayloadGate } from "../actor/schema.ts";
import { WorkerPool } from "../actor/worker.ts";
import type { Codec } from "../codec/types.ts";
import type { ConfigView } from "../config/types.ts";
import type { Ownership } from "../directory/ownership.ts";
import {
  ClosedError,
  OverloadedError,
  UnavailableError,
  UnknownActorTypeError,
} from "../errors.ts";
import type { Journal } from "../journal/types.ts";
import type { NodeObserver } from "../observe/node.ts";
import { type TimerWheel, withDeadline } from "../util/async.ts";
import type { Clock } from "../util/clock.ts";
import type { Access } from "./access.ts";
import { admit } from "./admit.ts";
import type { Call } from "./call.ts";

/** How many idle activations eviction compares (see `Local.#makeRoom`). */
const LRU_SAMPLE = 16;
/**
 * What local delivery needs from its node: what an activation needs (it passes those on), and
 * the rest of the path.
 */
export interface LocalDeps extends
  Pick<
    ActivationHost<Call>,
    | "node"
    | "journal"
    | "storage"
    | "dispatcher"
    | "log"
    | "clock"
    | "wheel"
    | "observer"
    | "publish"
    | "fenced"
    | "reminderScheduled"
    | "forwardOutbox"
    | "configView"
  > {
  readonly ownership: Ownership;
  /** Largest payload accepted, bytes. */
  readonly maxPayload: number;
  /** Most activations on this node. */
  readonly maxActivations: number;
  /** Who may call what (auth, when the node has it on). */
  readonly access: Access;
  /**
   * Where the node is in its life: `draining` lets running turns finish (their nested calls
   * may still activate actors here); `closed` activates nothing.
   */
  phase(): "open" | "draining" | "closed";
  /** An activation became active here. */
  activated(act: Activation<Call>): void;
  /** An activation that was active here stopped. */
  deactivated(act: Activation<Call>): void;
  /**
   * A call this node cannot handle now, and that nothing processed, goes back on the message
   * path (`owner`: the node that owns its actor, and its revision, when the claim found one).
   */
  reroute(call: Call, owner?: { node: string; revision: number }): void;
}

/** The actors and workers of this node. */
export class Local implements ActivationHost<Call> {
  readonly defs: ReadonlyMap<string, ActorDefinition<AnyActorTypes>>;
  /** Activations by `type/id`, least recently used first. */
  readonly activations = new Map<string, Activation<Call>>();
  readonly workers = new Map<string, WorkerPool<Call>>();
  readonly #deps: LocalDeps;
  /** Activations passivating to make room. */
  readonly #evicting = new Set<Activation<Call>>();
  /** Payload schemas: checked before auth and the mailbox, in arrival order per actor. */
  readonly #payloads: PayloadGate<Call, ActorDefinition<AnyActorTypes>>;

  constructor(deps: LocalDeps, defs: ReadonlyMap<string, ActorDefinition<AnyActorTypes>>) {
    this.#deps = deps;
    this.defs = defs;
    this.#payloads = new PayloadGate(deps.clock, (def, call) => this.#checked(def, call));
    for (const def of defs.values()) {
      if (def.stateless) this.workers.set(def.name, new WorkerPool(this, def));
    }
  }

  // ---- the delivery step ----

  /**
   * Delivers a call that is to run on this node: the checks (target, size, handler, then the
   * caller's access), then the mailbox. Nothing is activated for a call that fails a check.
   */
  deliver(call: Call): void {
    const def = this.defs.get(call.type);
    if (!def) {
      return call.reject(
        new UnknownActorTypeError(`Node "${this.#deps.node}" does not host "${call.type}"`),
      );
    }
    // Admitted here before (handed back from a stopping activation): it passed the checks.
    if (call.admitted) return this.#enqueue(def, call);
    const refused = admit(def, call, this.#deps.maxPayload);
    if (refused) return call.reject(refused);
    // The handler's turn owns the caller's input stream: when it ends, the stream stops.
    if (call.input) call.finally(() => void call.input!.cancel());
    this.#payloads.pass(def, call);
  }

  /** The rest of delivery, for a call whose payload passed its handler's schema. */
  #checked(def: ActorDefinition<AnyActorTypes>, call: Call): void {
    this.#deps.access.call(def, call, this.#enqueueAllowed);
  }

  /** `#enqueue`, bound once, for the access check to call. */
  readonly #enqueueAllowed = (def: ActorDefinition<AnyActorTypes>, call: Call): void =>
    this.#enqueue(def, call);

  #enqueue(def: ActorDefinition<AnyActorTypes>, call: Call): void {
    if (def.stateless) {
      this.workers.get(def.name)!.enqueue(call);
      return;
    }
    let act = this.activations.get(call.key);
    if (!act) {
      if (this.#deps.phase() === "closed") {
        return call.retry(new ClosedError("The system is closed"));
      }
      if (!this.#makeRoom()) {
        return call.reject(
          new OverloadedError(
            `Node "${this.#deps.node}" has ${this.activations.size} active actors (maxActivations) and none is idle`,
          ),
        );
      }
      act = this.#activate(def, call.id);
    }
    act.enqueue(call);
  }

  /** Whether the call's actor is active (or starting) here. */
  has(call: Call): boolean {
    return this.activations.has(call.key);
  }

  /** The actors active here, as `[type, id]`. */
  *active(): Iterable<readonly [string, string]> {
    for (const act of this.activations.values()) {
      if (act.status === "active") yield [act.def.name, act.id];
    }
  }

  /** Whether `type/id` runs here now (for `directory.locate`). */
  isActive(type: string, id: string): boolean {
    return this.activations.get(`${type}/${id}`)?.status === "active";
  }

  /**
   * Passivates idle activations until there is room for one more, least recently used first
   * among a sample (like Redis's approximate LRU): the oldest entries of the map are looked at,
   * up to {@link LRU_SAMPLE} idle ones, and the one idle the longest goes. Keeping an exact
   * order would cost a map update on every message. One whose `onPassivate` hook still runs no
   * longer counts: it takes no messages and ends soon.
   */
  #makeRoom(): boolean {
    const max = this.#deps.maxActivations;
    const counted = () => this.activations.size - this.#evicting.size;
    while (counted() >= max) {
      let victim: Activation<Call> | undefined;
      let seen = 0;
      for (const act of this.activations.values()) {
        if (act.status !== "active" || act.busy || act.queued > 0) continue;
        if (!victim || act.lastActive < victim.lastActive) victim = act;
        if (++seen === LRU_SAMPLE) break;
      }
      if (!victim) return false;
      const evicted = victim;
      this.#evicting.add(evicted);
      void evicted.passivate(true).finally(() => this.#evicting.delete(evicted));
    }
    return true;
  }

  #activate(def: ActorDefinition<AnyActorTypes>, id: string): Activation<Call> {
    const act = new Activation<Call>(this, def, id);
    this.activations.set(act.key, act);
    // Only the activation this node holds for the key is routed here (never a stopped one).
    act.ready.then(() => {
      if (this.activations.get(act.key) === act && act.status === "active") {
        this.#deps.activated(act);
      }
    }, () => {});
    return act;
  }

  /** Passivates activations idle for longer than their type's `idleAfter`. */
  sweepIdle(): void {
    const now = this.#deps.clock.monotonic();
    for (const act of this.activations.values()) {
      if (
        act.status === "active" && !act.busy && act.queued === 0 &&
        now - act.lastActive > act.def.idleAfter
      ) {
        void act.passivate(true);
      }
    }
  }

  /** Drops every activation at once (the lease lapsed). */
  dropAll(): void {
    for (const act of [...this.activations.values()]) void act.passivate(false);
  }

  /** Drains and passivates every activation, then waits for the worker pools (bounded). */
  async drain(boundMs: number): Promise<void> {
    const clock = this.#deps.clock;
    const until = clock.monotonic() + boundMs;
    await Promise.allSettled([
      ...[...this.activations.values()].map((a) => a.passivate(true, boundMs)),
      ...[...this.workers.values()].map((w) =>
        withDeadline(clock, w.idle(), until, () => new Error())
      )
        .map((p) => p.catch(() => {})),
    ]);
    // Activations started by the drain itself (nested calls) get the rest of the bound.
    const rest = [...this.activations.values()];
    if (rest.length > 0) {
      const left = Math.max(0, until - clock.monotonic());
      await Promise.allSettled(rest.map((a) => a.passivate(true, left)));
    }
  }

  // ---- ActivationHost ----

  get node(): string {
    return this.#deps.node;
  }
  get journal(): Journal {
    return this.#deps.journal;
  }
  get storage(): Codec {
    return this.#deps.storage;
  }
  get dispatcher(): Dispatcher {
    return this.#deps.dispatcher;
  }
  get log(): Logger {
    return this.#deps.log;
  }
  get clock(): Clock {
    return this.#deps.clock;
  }
  get wheel(): TimerWheel {
    return this.#deps.wheel;
  }
  get observer(): NodeObserver {
    return this.#deps.observer;
  }
  publish(topic: string, payload: unknown): Promise<void> {
    return this.#deps.publish(topic, payload);
  }
  fenced(now?: number): boolean {
    return this.#deps.fenced(now);
  }
  forwardOutbox(actor: string, messages: readonly OutboxMessage[]): void {
    this.#deps.forwardOutbox?.(actor, messages);
  }
  reminderScheduled(due: number): void {
    this.#deps.reminderScheduled(due);
  }
  configView(): ConfigView {
    return this.#deps.configView();
  }

  async claim(act: Activation<Call>): Promise<Recovered> {
    const res = await this.#deps.ownership.claim(act.def.name, act.id);
    if (!res.ok) throw new Redirect(res.owner, res.revision);
    if (act.status === "stopped") {
      // Stopped while it claimed (a fence, a shutdown): the record it just won is not kept.
      this.#deps.ownership.release(act.def.name, act.id, res.recovered.epoch).catch(() => {});
    }
    return res.recovered;
  }

  stopped(act: Activation<Call>, leftover: Call[], owner?: Redirect): void {
    if (act.status === "stopped" && act.wasActive) this.#deps.deactivated(act);
    if (this.activations.get(act.key) === act) {
      this.activations.delete(act.key);
      const epoch = act.epoch;
      if (owner === undefined && epoch !== undefined && !this.#deps.fenced()) {
        this.#deps.ownership.release(act.def.name, act.id, epoch).catch((err) =>
          this.log.debug("Release of ownership failed", { actor: act.key, error: String(err) })
        );
      }
    }
    for (const call of leftover) {
      if (this.#deps.fenced()) {
        // Not processed, and never will be here: a remote caller hears nothing (it moves the
        // request when this node is declared dead); nothing is forwarded after it gave up.
        call.drop(new UnavailableError(`Node "${this.node}" lost its lease; not processed`));
      } else if (this.#deps.phase() !== "open") {
        // Shutting down: what was not handled here is answered "send it elsewhere".
        call.retry(new ClosedError("The system is closing"));
      } else if (owner !== undefined && owner.owner !== this.node) {
        // Another live node owns it: a waiting remote caller is told to send it there; a
        // local one (or one already answered) is handed on by this node.
        if (!call.redirect(owner.owner, owner.revision)) {
          this.#deps.reroute(call, { node: owner.owner, revision: owner.revision });
        }
      } else this.#deps.reroute(call);
    }
  }
}
