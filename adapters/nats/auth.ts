/**
 * {@link natsAuthConfig}: the `authorization` (or `accounts`) section of a nats-server
 * configuration that locks a NATS server down for Troupe: node users may do what Troupe
 * nodes do, client users may only send requests to actors and workers and receive replies on
 * their own inbox prefix. See docs/security.md.
 *
 * @module
 */

import { encodeToken } from "../../src/mesh/subject.ts";

/** A node identity: a user name and password, or an NKey public key (`U…`). */
export type NatsNodeUser = { user: string; pass: string } | { nkey: string };

/**
 * A client identity (a plain NATS client: a gateway, an external service) and what it may
 * call.
 */
export type NatsClientUser = ({ user: string; pass: string } | { nkey: string }) & {
  /**
   * The client's inbox prefix: the only subjects it may subscribe to are `<inboxPrefix>.>`,
   * so it must connect with the same prefix (nats.js `inboxPrefix`, or natsMesh's). Dots
   * separate tokens; no wildcards.
   * @default {"_INBOX_<user>" (or "_INBOX_<nkey>")}
   */
  inboxPrefix?: string;
  /**
   * The actor and worker types it may call (requests to `<prefix>.n.*.<type>`, every node's
   * inbox for the type, and `<prefix>.w.<type>`). @default {all: `<prefix>.n.*.*` and
   * `<prefix>.w.>`}
   */
  call?: string[];
  /**
   * Topic patterns it may publish to (`"orders.>"` allows `<prefix>.t.orders.>`): a topic
   * message reaches every subscribed actor, so none by default. @default {[]}
   */
  publishTopics?: string[];
  /** Topic patterns it may subscribe to. @default {[]} */
  subscribeTopics?: string[];
};

/** Options of {@link natsAuthConfig}. */
export interface NatsAuthConfigOptions {
  /** The mesh's prefix (`natsMesh({ prefix })`). @default {"troupe"} */
  prefix?: string;
  /**
   * Node users: Troupe nodes, and Troupe client systems (`createSystem` without actors),
   * which take part in membership and read the directory. Fully trusted.
   */
  nodes: NatsNodeUser[];
  /** Client users: plain NATS clients that call actors and workers by request. @default {[]} */
  clients?: NatsClientUser[];
  /**
   * KV buckets nodes may write, besides the directory's `<prefix>_nodes`
   * and `<prefix>_leases`: full bucket names (NATS subjects have no partial-token
   * wildcards, so `<prefix>_*` cannot be written as one permission). @default {[]}
   */
  buckets?: string[];
  /**
   * The inbox prefix of node users (natsMesh's `inboxPrefix` on the nodes).
   * @default {"_INBOX"}
   */
  nodeInboxPrefix?: string;
  /**
   * When set, the users go into an account of this name with JetStream enabled (an
   * `accounts { … }` section), isolating Troupe's subjects and streams from other accounts
   * of a shared server; otherwise into the server's global account (`authorization { … }`).
   */
  account?: string;
}

const TOKEN = /^[A-Za-z0-9_-]+$/;
const INBOX = /^[^\s.*>$]+(\.[^\s.*>]+)*$/;
const TOPIC = /^[^\s.]+(\.[^\s.]+)*$/;

function q(value: string): string {
  return JSON.stringify(value);
}

function list(values: string[]): string {
  return `[${values.map(q).join(", ")}]`;
}

function identity(u: { user: string; pass: string } | { nkey: string }, what: string): string {
  if ("nkey" in u) {
    if (typeof u.nkey !== "string" || !/^U[A-Z2-7]{55}$/.test(u.nkey)) {
      throw new TypeError(`Cannot use ${what}: nkey must be a user public key (U… , 56 chars)`);
    }
    return `nkey: ${q(u.nkey)}`;
  }
  if (typeof u.user !== "string" || u.user === "" || typeof u.pass !== "string") {
    throw new TypeError(`Cannot use ${what}: needs user and pass (or nkey)`);
  }
  return `user: ${q(u.user)}, password: ${q(u.pass)}`;
}

function nameOf(u: { user: string } | { nkey: string }): string {
  return "nkey" in u ? u.nkey : u.user;
}

/**
 * The nats-server configuration section that locks a server down for Troupe: paste it into
 * `nats-server.conf` (next to `jetstream { … }`, `tls { … }`, `cluster { … }`).
 *
 * Node users may publish and subscribe `<prefix>.>` and their inbox prefix, publish to every
 * client's inbox prefix (replies and stream frames to clients), use the JetStream API
 * (`$JS.API.>`, `$JS.ACK.>`, `$JS.FC.>`) and write the directory's KV buckets
 * (`$KV.<prefix>_nodes.>`, `$KV.<prefix>_leases.>` and `buckets`).
 * Nodes are fully trusted: the JetStream API lets them change any stream of their account.
 *
 * Client users may only publish requests to `<prefix>.n.*.<type>` and `<prefix>.w.<type>`
 * (all types, or those in `call`), and the topics in `publishTopics`; they may subscribe only
 * to `<inboxPrefix>.>` and the topics in `subscribeTopics`. They cannot reach node control
 * subjects (`<prefix>.c.>`), subscribe to actor or worker subjects (and so swallow requests), use
 * JetStream or write any bucket, or read other users' replies. A client must connect with its
 * `inboxPrefix` (nats.js `inboxPrefix` option), since replies arrive there.
 *
 * No user gets `allow_responses`: every subject a node replies to is in its publish list, so
 * a client cannot make a node publish to another application's subjects by naming them as its
 * reply subject (nodes must still refuse reply subjects outside an inbox prefix: see
 * docs/security.md).
 *
 * Passwords are written as given: pass a bcrypt hash (`nats server passwd`, `$2a$…`) to keep
 * clear-text passwords out of the file.
 *
 * @example
 * ```ts
 * import { natsAuthConfig } from "@troupe/troupe/nats";
 *
 * const section = natsAuthConfig({
 *   prefix: "troupe",
 *   nodes: [{ user: "node", pass: "node-secret" }],
 *   clients: [{ user: "gateway", pass: "gw-secret", call: ["account"] }],
 * });
 * // gateway connects with: { user: "gateway", pass: "gw-secret", inboxPrefix: "_INBOX_gateway" }
 * await Deno.writeTextFile("auth.conf", section); // `include auth.conf` in nats-server.conf
 * ```
 * @throws {TypeError} On a malformed prefix, identity, inbox prefix, type or topic.
 */
export function natsAuthConfig(options: NatsAuthConfigOptions): string {
  const prefix = options.prefix ?? "troupe";
  if (!TOKEN.test(prefix)) {
    throw new TypeError(`Cannot use prefix "${prefix}": must match [A-Za-z0-9_-]+`);
  }
  if (!Array.isArray(options.nodes) || options.nodes.length === 0) {
    throw new TypeError("Cannot make a NATS auth config without node users");
  }
  const nodeInbox = options.nodeInboxPrefix ?? "_INBOX";
  if (!INBOX.test(nodeInbox)) {
    throw new TypeError(`Cannot use nodeInboxPrefix ${q(nodeInbox)}: not a subject prefix`);
  }
  const buckets = [
    `${prefix}_nodes`,
    `${prefix}_leases`,
    ...options.buckets ?? [],
  ];
  for (const b of buckets) {
    if (!TOKEN.test(b)) throw new TypeError(`Cannot use bucket "${b}": [A-Za-z0-9_-]+`);
  }

  const seen = new Set<string>();
  const unique = (u: NatsNodeUser | NatsClientUser) => {
    const name = nameOf(u);
    if (seen.has(name)) throw new TypeError(`Cannot list user ${q(name)} twice`);
    seen.add(name);
  };

  const clientInboxes: string[] = [];
  const clients: string[] = [];
  for (const c of options.clients ?? []) {
    const what = `client ${q(nameOf(c) ?? "?")}`;
    const id = identity(c, what);
    unique(c);
    const inbox = c.inboxPrefix ?? `_INBOX_${nameOf(c)}`;
    if (!INBOX.test(inbox)) {
      throw new TypeError(`Cannot use ${what}: inboxPrefix ${q(inbox)} is not a subject prefix`);
    }
    if (inbox === nodeInbox || inbox.startsWith(`${nodeInbox}.`)) {
      throw new TypeError(
        `Cannot use ${what}: inboxPrefix ${q(inbox)} is inside the nodes' inbox prefix`,
      );
    }
    clientInboxes.push(inbox);
    const publish: string[] = [];
    if (c.call === undefined) publish.push(`${prefix}.n.*.*`, `${prefix}.w.>`);
    else {
      for (const type of c.call) {
        if (typeof type !== "string" || type === "") {
          throw new TypeError(`Cannot use ${what}: call lists an empty type`);
        }
        publish.push(`${prefix}.n.*.${encodeToken(type)}`, `${prefix}.w.${encodeToken(type)}`);
      }
    }
    const topics = (patterns: string[] | undefined) =>
      (patterns ?? []).map((t) => {
        if (!TOPIC.test(t)) throw new TypeError(`Cannot use ${what}: topic ${q(t)}`);
        return `${prefix}.t.${t}`;
      });
    publish.push(...topics(c.publishTopics));
    const subscribe = [`${inbox}.>`, ...topics(c.subscribeTopics)];
    clients.push(
      `    {\n      ${id}\n      permissions: {\n` +
        `        publish: { allow: ${list(publish)} }\n` +
        `        subscribe: { allow: ${list(subscribe)} }\n      }\n    }`,
    );
  }

  const nodePublish = [
    `${prefix}.>`,
    `${nodeInbox}.>`,
    ...clientInboxes.map((i) => `${i}.>`),
    "$JS.API.>",
    "$JS.ACK.>",
    "$JS.FC.>",
    ...buckets.map((b) => `$KV.${b}.>`),
  ];
  const nodeSubscribe = [`${prefix}.>`, `${nodeInbox}.>`];
  const nodes = options.nodes.map((n, i) => {
    const id = identity(n, `node user ${i + 1}`);
    unique(n);
    return `    {\n      ${id}\n      permissions: {\n` +
      `        publish: { allow: ${list(nodePublish)} }\n` +
      `        subscribe: { allow: ${list(nodeSubscribe)} }\n      }\n    }`;
  });

  const body = [`# Troupe on NATS, prefix ${q(prefix)}: generated by natsAuthConfig()`];
  const users = `users: [\n${[...nodes, ...clients].join("\n")}\n  ]`;
  if (options.account !== undefined) {
    if (!TOKEN.test(options.account)) {
      throw new TypeError(`Cannot use account "${options.account}": [A-Za-z0-9_-]+`);
    }
    body.push(
      `accounts {`,
      `  ${options.account}: {`,
      `    jetstream: enabled`,
      `    ${users.replaceAll("\n", "\n  ")}`,
      `  }`,
      `}`,
    );
  } else {
    body.push(`authorization {`, `  ${users}`, `}`);
  }
  return body.join("\n") + "\n";
}
