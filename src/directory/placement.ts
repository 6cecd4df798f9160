/**
 * Placement by rendezvous (highest random weight) hashing: every node computes the same owner
 * for a key from the same member list, and when a node joins or leaves only the keys it wins
 * or held move.
 *
 * @module
 */

/** cyrb53: a fast 53-bit string hash with good spread. */
export function hash53(str: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < str.length; i++) {
    const ch = str.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** The node among `nodes` that owns `key`, or undefined when there is none. */
export function rendezvous(nodes: readonly string[], key: string): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const node of nodes) {
    const score = hash53(`${node}\u0000${key}`);
    if (score > bestScore || (score === bestScore && best !== undefined && node < best)) {
      best = node;
      bestScore = score;
    }
  }
  return best;
}

/** A 32-bit mix of two 32-bit values (murmur3's finalizer over their xor). */
function mix(a: number, b: number): number {
  let h = (a ^ b) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Rendezvous placement over a fixed list of nodes, prepared once (per membership version):
 * each node's hash is computed here, so placing a key costs one string hash and one integer
 * mix per node, with no allocation. The same nodes and key give the same owner on every
 * node, whatever the order of `nodes`.
 *
 * @example
 * ```ts
 * import { Placement } from "./placement.ts";
 * const p = new Placement(["n1", "n2", "n3"]);
 * console.log(p.owner("account/alice")); // one of n1, n2, n3: the same on every node
 * ```
 */
export class Placement {
  /** The nodes, sorted by id. */
  readonly nodes: readonly string[];
  readonly #seeds: Uint32Array;

  constructor(nodes: readonly string[]) {
    this.nodes = [...nodes].sort();
    this.#seeds = new Uint32Array(this.nodes.length);
    this.nodes.forEach((n, i) => this.#seeds[i] = hash53(n) >>> 0);
  }

  /** The node that owns `key` (undefined when there is no node), skipping `avoid`. */
  owner(key: string, avoid?: ReadonlySet<string>): string | undefined {
    const n = this.nodes.length;
    if (n === 0) return undefined;
    if (n === 1) return avoid?.has(this.nodes[0]!) ? undefined : this.nodes[0];
    const h = hash53(key) >>> 0;
    let best = -1;
    let bestScore = -1;
    for (let i = 0; i < n; i++) {
      if (avoid !== undefined && avoid.size > 0 && avoid.has(this.nodes[i]!)) continue;
      const score = mix(h, this.#seeds[i]!);
      if (score > bestScore) { // ties: the first in id order wins
        best = i;
        bestScore = score;
      }
    }
    return best < 0 ? undefined : this.nodes[best];
  }
}
