/**
 * {@link natsAuthConfig}: the `accounts` section of a nats-server configuration that locks a
 * NATS server down for Troupe. Node users share one account and may do what Troupe nodes do.
 * Each client user gets an account of its own that imports the Troupe service: it may only
 * send requests to the actor and worker types it may call (and publish or receive the topics
 * it is given), and the server maps every reply back to the connection that sent the request,
 * so a node cannot be made to publish into another client's inbox. See docs/security.md.
 *
 * @module
 */

import { encodeToken } from "../../spi.ts";

/** A node identity: a user name and password, or an NKey public key (`U…`). */
export type NatsNodeUser = { user: string; pass: string } | { nkey: string };

/**
 * A client identity (a plain NATS client: a gateway, an external service) and what it may
 * call. Each client user is alone in an account of its own.
 */
export type NatsClientUser = ({ user: string; pass: string } | { nkey: string }) & {
  /**
   * The account the client user is put in (one client per account).
   * @default {"<nodes' account>_<user>" (or "<nodes' account>_<nkey>")}
   */
  account?: string;
  /**
   * The client's inbox prefix: the only subjects it may subscribe to (besides
   * `subscribeTopics`) are `<inboxPrefix>.>`. Its account is its own, so the nats.js default
   * works; another prefix needs the same `inboxPrefix` option on the connection. Dots
   * separate tokens; no wildcards.
   * @default {"_INBOX"}
   */
  inboxPrefix?: string;
  /**
   * The actor and worker types it may call: requests to `<prefix>.n.*.<type>` (an actor type,
   * on any node) and `<prefix>.w.<type>` (a worker type). @default {every type}
   */
  call?: string[];
  /**
   * Topic patterns it may publish to (`"orders.>"` allows `<prefix>.t.orders.>`): a topic
   * message reaches every subscribed actor, so none by default. @default {[]}
   */
  publishTopics?: string[];
  /** Topic patterns it may subscribe to (messages the nodes publish). @default {[]} */
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
   * KV buckets nodes may write, besides the directory's `<prefix>_nodes` and `<prefix>_leases`:
   * full bucket names (NATS subjects have no partial-token wildcards, so `<prefix>_*` cannot be
   * written as one permission). @default {[]}
   */
  buckets?: string[];
  /**
   * The inbox prefix of node users (natsMesh's `inboxPrefix` on the nodes).
   * @default {"_INBOX"}
   */
  nodeInboxPrefix?: string;
  /**
   * The account of the node users, with JetStream enabled; it exports the Troupe service
   * that each client's account imports. @default {"TROUPE"}
   */
  account?: string;
}

/**
 * The first token of the reply subjects nats-server gives requests that cross from a client's
 * account into the nodes' (service imports): nodes serving clients of {@link natsAuthConfig}
 * must accept it, `createSystem({ replyPrefixes: ["_INBOX", NATS_SERVICE_REPLY_PREFIX] })`.
 */
export const NATS_SERVICE_REPLY_PREFIX = "_R_";

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

/** One user entry of an account's `users` list. */
function userEntry(id: string, publish: string[], subscribe: string[]): string {
  return `      {\n        ${id}\n        permissions: {\n` +
    `          publish: { allow: ${list(publish)} }\n` +
    `          subscribe: { allow: ${list(subscribe)} }\n        }\n      }`;
}

/**
 * The nats-server configuration section that locks a server down for Troupe: paste it into
 * `nats-server.conf` (next to `jetstream { … }`, `tls { … }`, `cluster { … }`). It is an
 * `accounts { … }` section:
 *
 * - **The nodes' account** (`account`, JetStream enabled) holds the node users. They may
 *   publish and subscribe `<prefix>.>` and their inbox prefix, answer requests from client
 *   accounts (`_R_.>`), use the JetStream API (`$JS.API.>`, `$JS.ACK.>`, `$JS.FC.>`) and write
 *   the directory's KV buckets (`$KV.<prefix>_nodes.>`, `$KV.<prefix>_leases.>` and `buckets`). Nodes
 *   are fully trusted: the JetStream API lets them change any stream of their account. The
 *   account exports, as services, exactly the subjects its clients import.
 * - **One account per client user.** It imports the services `<prefix>.n.*.<type>` (actor
 *   types, on any node) and `<prefix>.w.<type>` (worker types) of the types in `call` (all
 *   when not given), the topics in `publishTopics` (as services) and those in
 *   `subscribeTopics` (as streams). The client may publish only to these, and subscribe only to
 *   `<inboxPrefix>.>` and its `subscribeTopics`. Nothing else of the nodes' account exists
 *   for it: not node control (`<prefix>.c.>`), not the nodes' inboxes, not JetStream, not the
 *   buckets, and not any other client.
 *
 * Replies are bound to their requester: a request that crosses a service import reaches the
 * node with a reply subject the server made (`_R_.…`), and the server maps the one answer to
 * it back to the connection that sent the request, on the reply subject it named, in its own
 * account. A client that names another client's inbox as its reply subject gets the answer
 * itself; a node can reach no client's inbox but through such a mapped reply. Nodes must accept
 * these reply subjects: `createSystem({ replyPrefixes: ["_INBOX", "_R_"] })`
 * ({@link NATS_SERVICE_REPLY_PREFIX}). Plain clients use request/reply (asks, tells, worker
 * calls) and topics; streams need a node user or the HTTP gateway.
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
 * // the gateway connects with { user: "gateway", pass: "gw-secret" }
 * await Deno.writeTextFile("auth.conf", section); // `include auth.conf` in nats-server.conf
 * ```
 * @throws {TypeError} On a malformed prefix, identity, account, inbox prefix, type or topic.
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
  const nodeAccount = options.account ?? "TROUPE";
  if (!TOKEN.test(nodeAccount)) {
    throw new TypeError(`Cannot use account "${nodeAccount}": [A-Za-z0-9_-]+`);
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
  const accounts = new Set([nodeAccount]);

  // what the nodes' account exports, and to which client accounts
  const services = new Map<string, Set<string>>();
  const streams = new Map<string, Set<string>>();
  const exportTo = (to: Map<string, Set<string>>, subject: string, account: string) => {
    let set = to.get(subject);
    if (!set) to.set(subject, set = new Set());
    set.add(account);
  };

  const clientAccounts: string[] = [];
  for (const c of options.clients ?? []) {
    const what = `client ${q(nameOf(c) ?? "?")}`;
    const id = identity(c, what);
    unique(c);
    const account = c.account ?? `${nodeAccount}_${nameOf(c)}`;
    if (!TOKEN.test(account)) {
      throw new TypeError(
        `Cannot use ${what}: account ${q(account)} is not [A-Za-z0-9_-]+ (give one as account)`,
      );
    }
    if (accounts.has(account)) {
      throw new TypeError(`Cannot use ${what}: account ${q(account)} is not its own`);
    }
    accounts.add(account);
    const inbox = c.inboxPrefix ?? "_INBOX";
    if (!INBOX.test(inbox)) {
      throw new TypeError(`Cannot use ${what}: inboxPrefix ${q(inbox)} is not a subject prefix`);
    }
    const calls: string[] = [];
    if (c.call === undefined) calls.push(`${prefix}.n.*.*`, `${prefix}.w.*`);
    else {
      for (const type of c.call) {
        if (typeof type !== "string" || type === "") {
          throw new TypeError(`Cannot use ${what}: call lists an empty type`);
        }
        calls.push(`${prefix}.n.*.${encodeToken(type)}`, `${prefix}.w.${encodeToken(type)}`);
      }
    }
    const topics = (patterns: string[] | undefined) =>
      (patterns ?? []).map((t) => {
        if (!TOPIC.test(t)) throw new TypeError(`Cannot use ${what}: topic ${q(t)}`);
        return `${prefix}.t.${t}`;
      });
    const published = topics(c.publishTopics);
    const subscribed = topics(c.subscribeTopics);
    const imports: string[] = [];
    for (const subject of [...calls, ...published]) {
      exportTo(services, subject, account);
      imports.push(
        `      { service: { account: ${q(nodeAccount)}, subject: ${q(subject)} } }`,
      );
    }
    for (const subject of subscribed) {
      exportTo(streams, subject, account);
      imports.push(`      { stream: { account: ${q(nodeAccount)}, subject: ${q(subject)} } }`);
    }
    clientAccounts.push(
      `  ${account}: {\n    users: [\n${
        userEntry(id, [...calls, ...published], [`${inbox}.>`, ...subscribed])
      }\n    ]\n    imports: [\n${imports.join("\n")}\n    ]\n  }`,
    );
  }

  const nodePublish = [
    `${prefix}.>`,
    `${nodeInbox}.>`,
    `${NATS_SERVICE_REPLY_PREFIX}.>`,
    "$JS.API.>",
    "$JS.ACK.>",
    "$JS.FC.>",
    ...buckets.map((b) => `$KV.${b}.>`),
  ];
  // `$SRV.>`: nodes answer NATS service discovery (`nats micro ls troupe`).
  const nodeSubscribe = [`${prefix}.>`, `${nodeInbox}.>`, "$SRV.>"];
  const nodes = options.nodes.map((n, i) => {
    const id = identity(n, `node user ${i + 1}`);
    unique(n);
    return userEntry(id, nodePublish, nodeSubscribe);
  });
  const exports = [
    ...[...services].map(([subject, to]) =>
      `      { service: ${q(subject)}, accounts: ${list([...to])} }`
    ),
    ...[...streams].map(([subject, to]) =>
      `      { stream: ${q(subject)}, accounts: ${list([...to])} }`
    ),
  ];
  const nodesAccount =
    `  ${nodeAccount}: {\n    jetstream: enabled\n    users: [\n${nodes.join("\n")}\n    ]` +
    (exports.length ? `\n    exports: [\n${exports.join("\n")}\n    ]` : "") +
    "\n  }";
  return [
    `# Troupe on NATS, prefix ${q(prefix)}: generated by natsAuthConfig()`,
    `accounts {`,
    nodesAccount,
    ...clientAccounts,
    `}`,
  ].join("\n") + "\n";
}
