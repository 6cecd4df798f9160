/**
 * What a node answers about itself over the mesh: its control subjects (`system.cluster`, see
 * cluster.ts) and NATS service discovery (micro.ts).
 *
 * @module
 */

import { type ControlDeps, type Responder, serveControl } from "./control.ts";
import { serveMicro } from "./micro.ts";

/** What {@link serveObservation} needs from its node. */
export interface ObservationDeps extends ControlDeps {
  /** Where messages of hosted type `type` reach this node (service discovery's endpoints). */
  endpoint(type: string): { subject: string; queueGroup?: string };
  /** Answer NATS service discovery (`$SRV.…`). @default {true} */
  readonly micro?: boolean;
}

/**
 * Starts answering the node's control subjects and, unless turned off, service discovery, and
 * reporting the node's counts to the observed metrics; `close()` stops all three.
 */
export function serveObservation(d: ObservationDeps): Responder {
  const info = d.info();
  d.observer.start();
  const responders = [serveControl(d)];
  if (d.micro !== false) {
    responders.push(serveMicro({
      conn: d.conn,
      observer: d.observer,
      log: d.log,
      node: info.id,
      prefix: d.prefix,
      since: info.since,
      endpoints: info.types.map((name) => ({ name, ...d.endpoint(name) })),
      replyAllowed: (s) => d.replyAllowed(s),
    }));
  }
  return {
    close: async () => {
      d.observer.close();
      await Promise.all(responders.map((r) => r.close()));
    },
  };
}
