/**
 * A mesh whose connections' durable publish is another function (for the outbox tests: a node
 * that dies before forwarding, a publish held long enough to be killed in the middle of it).
 *
 * @module
 */

import type { DurableTopics, Mesh, MeshConnection } from "../spi.ts";

/** `target` with `key` replaced; its own methods bound to it (they use private fields). */
function replace<T extends object>(target: T, key: PropertyKey, value: unknown): T {
  return new Proxy(target, {
    get(t, k) {
      if (k === key) return value;
      const v = Reflect.get(t, k, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

/** `inner`, with every connection's durable publish made by `wrap(theirs)`. */
export function withDurablePublish(
  inner: Mesh,
  wrap: (publish: DurableTopics["publish"]) => DurableTopics["publish"],
): Mesh {
  return {
    kind: inner.kind,
    leaseTtl: inner.leaseTtl,
    prefix: inner.prefix,
    async connect(o) {
      const c = await inner.connect(o);
      let topics: DurableTopics | undefined;
      const durable = (): DurableTopics => {
        if (topics) return topics;
        const d = c.durableTopics!();
        return topics = replace(d, "publish", wrap(d.publish.bind(d)));
      };
      return replace<MeshConnection>(c, "durableTopics", durable);
    },
  };
}
