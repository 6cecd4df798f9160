/**
 * The routing authority: the one place that decides where a call goes — this node, or which
 * other node — for every path: a first send, a retry after a refusal, a redirect, and the
 * leftovers of a stopping activation.
 *
 * For an actor it looks, in order, at: an activation on this node; the location cache
 * (actor → node and the revision of that node's ownership, filled by redirects, purged when a
 * node dies); rendezvous placement over the live hosts of the type, prepared once per
 * membership version. A stale cache entry costs one redirect, never a wrong answer: ownership
 * is decided by the claim on the node that receives the message, and fenced by the journal's
 * epoch, never by the route. Stateless workers go to a host picked by their id hint
 * (rendezvous) or at random.
 *
 * @module
 */

import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import type { Membership } from "../directory/membership.ts";
import { Placement } from "../directory/placement.ts";
import { UnknownActorTypeError } from "../errors.ts";
import type { Call } from "./call.ts";

/** Where a call goes next. */
export type Decision =
  /** Deliver on this node. */
  | { readonly to: "local" }
  /** Send to that node's inbox for the type. */
  | { readonly to: "node"; readonly node: string }
  /**
   * Nowhere now: no live node hosts the type (wait and decide again), or, with `error`, no
   * node has hosted it since this node started (an unknown type).
   */
  | { readonly to: "none"; readonly error?: Error };

const LOCAL: Decision = Object.freeze({ to: "local" });
const NOWHERE: Decision = Object.freeze({ to: "none" });

/** What the router needs from its node. */
export interface RouterDeps {
  readonly node: string;
  readonly membership: Membership;
  /** Types hosted by this node. */
  readonly defs: ReadonlyMap<string, ActorDefinition<AnyActorTypes>>;
  /** Whether the call's actor is active (or starting) on this node. */
  isLocal(call: Call): boolean;
  /** Most entries of the location cache. @default {65536} */
  readonly cacheSize?: number;
}

interface Location {
  readonly node: string;
  readonly revision: number;
}

/** Decides where calls go; see the module doc. */
export class Router {
  readonly #deps: RouterDeps;
  readonly #cache = new Map<string, Location>();
  readonly #cacheSize: number;
  /** Placement per type, for the membership version it was built at. */
  readonly #placements = new Map<string, Placement>();
  /** Actor types some node hosted since this node started. */
  readonly #hostedTypes = new Set<string>();
  /** One decision object per node (decided on every remote message: no allocation). */
  readonly #toNode = new Map<string, Decision>();
  readonly #off: () => void;

  constructor(deps: RouterDeps) {
    this.#deps = deps;
    this.#cacheSize = deps.cacheSize ?? 65_536;
    for (const n of deps.membership.nodes()) for (const t of n.types) this.#hostedTypes.add(t);
    this.#off = deps.membership.on((e) => {
      if (e.type === "node_joined") {
        for (const t of e.node.types) this.#hostedTypes.add(t);
        this.#placements.clear();
      } else if (e.type === "node_left") {
        this.#placements.clear();
        this.#toNode.delete(e.node.id);
        this.forget(e.node.id);
      }
    });
  }

  /**
   * Where `call` goes, avoiding the nodes in `avoid` (they just refused or did not answer;
   * when every host is in it, they are all tried again).
   */
  decide(call: Call, avoid?: ReadonlySet<string>): Decision {
    const d = this.#deps;
    const type = call.type;
    const def = d.defs.get(type);
    if (def?.stateless || (def === undefined && call.id === "")) {
      return this.#worker(type, call.id, def !== undefined, avoid);
    }
    if (def !== undefined && d.isLocal(call)) return LOCAL;
    const key = call.key;
    const cached = this.#cache.get(key);
    if (cached !== undefined && !avoid?.has(cached.node)) {
      return cached.node === d.node ? LOCAL : this.#node(cached.node);
    }
    const placement = this.#placement(type);
    let owner = placement.owner(key, avoid);
    if (owner === undefined && avoid !== undefined && avoid.size > 0) owner = placement.owner(key);
    if (owner === undefined) return this.#nowhere(type);
    return owner === d.node ? LOCAL : this.#node(owner);
  }

  #worker(type: string, id: string, hostedHere: boolean, avoid?: ReadonlySet<string>): Decision {
    const placement = this.#placement(type);
    const hosts = placement.nodes;
    // Hosted here and nowhere else (or nowhere else known yet): run here.
    if (
      hostedHere && (hosts.length === 0 || (hosts.length === 1 && hosts[0] === this.#deps.node))
    ) {
      return LOCAL;
    }
    let node: string | undefined;
    if (id !== "") node = placement.owner(`${type}/${id}`, avoid);
    else {
      const open = avoid && avoid.size > 0 ? hosts.filter((n) => !avoid.has(n)) : hosts;
      node = open[Math.floor(Math.random() * open.length)];
    }
    if (node === undefined) {
      return avoid && avoid.size > 0 ? this.#worker(type, id, hostedHere) : this.#nowhere(type);
    }
    return node === this.#deps.node ? LOCAL : this.#node(node);
  }

  #node(node: string): Decision {
    let d = this.#toNode.get(node);
    if (d === undefined) this.#toNode.set(node, d = Object.freeze({ to: "node", node }));
    return d;
  }

  #nowhere(type: string): Decision {
    // A type no node hosted since this node started (its first view of the membership is the
    // whole bucket) is unknown; else its hosts are away for now and may come back.
    if (this.#hostedTypes.has(type)) return NOWHERE;
    return {
      to: "none",
      error: new UnknownActorTypeError(`No live node hosts actor type "${type}"`),
    };
  }

  /** The node that would get a message to actor `type/id` now (no activation looked at). */
  placeOf(type: string, id: string): string | undefined {
    const key = `${type}/${id}`;
    return this.#cache.get(key)?.node ?? this.#placement(type).owner(key);
  }

  /** Whether any live node hosts `type` now. */
  hasHosts(type: string): boolean {
    return this.#placement(type).nodes.length > 0;
  }

  #placement(type: string): Placement {
    let p = this.#placements.get(type);
    if (p === undefined) {
      p = new Placement(this.#deps.membership.hostsOf(type));
      this.#placements.set(type, p);
    }
    return p;
  }

  /**
   * A node answered that `node` owns actor `key` at `revision`: remember it (an older revision
   * than the one remembered is ignored).
   */
  redirected(key: string, node: string, revision: number): void {
    const known = this.#cache.get(key);
    if (known !== undefined && known.revision > revision) return;
    this.#cache.delete(key); // re-inserted last: the map's order is the eviction order
    if (node === this.#deps.node) return; // local activations are found first anyway
    this.#cache.set(key, { node, revision });
    if (this.#cache.size > this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
  }

  /** Forgets where actor `key` is (its node refused or is gone). */
  unlearn(key: string): void {
    this.#cache.delete(key);
  }

  /** Forgets every location on `node` (it left or died). */
  forget(node: string): void {
    for (const [key, loc] of this.#cache) if (loc.node === node) this.#cache.delete(key);
  }

  /** Entries in the location cache. */
  get cached(): number {
    return this.#cache.size;
  }

  /** Stops following the membership. */
  close(): void {
    this.#off();
    this.#cache.clear();
  }
}
