/**
 * A locked-down NATS server (the configuration from `natsAuthConfig`) with Troupe nodes, a
 * Troupe client system and plain NATS client users: what works, and each denial.
 */
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { errors as natsErrors, nkeys, type Status } from "@nats-io/nats-core";
import { Kvm } from "@nats-io/kv";
import { createSystem, defineActor, memoryJournal, type System } from "../../mod.ts";
import {
  NATS_SERVICE_REPLY_PREFIX,
  natsAuthConfig,
  NatsAuthError,
  natsMesh,
  type NatsMeshOptions,
} from "./mod.ts";
import { rawBody } from "../../tests/_wire.ts";
import { type NatsCluster, startNatsCluster } from "../testing/mod.ts";
import type { NatsMeshConnection } from "./connection.ts";
import { clusterSteps } from "../../tests/cluster_suite.ts";

const Counter = defineActor({
  name: "counter",
  initialState: () => ({ n: 0 }),
  events: { added: (s, e: { by: number }) => ({ n: s.n + e.by }) },
  handlers: {
    add(ctx, by: number) {
      ctx.emit("added", { by });
      return ctx.state.n;
    },
    get: (ctx) => ctx.state.n,
    echo: (_ctx, value: unknown) => value,
  },
});

/** A worker type: what a plain client user calls by request on `<prefix>.w.echo`. */
const Echo = defineActor({
  name: "echo",
  stateless: true,
  handlers: { say: (_ctx, value: unknown) => value },
});

const NODE = { user: "node", pass: "node-pw" };
const EDGE = { user: "edge", pass: "edge-pw" }; // a Troupe client system: a node identity
const GW = { user: "gw", pass: "gw-pw" }; // a plain NATS client user
const GW_INBOX = "_INBOX_gw";
const LIMITED = { user: "lim", pass: "lim-pw" }; // a client user that may call echo only
const VICTIM = { user: "victim", pass: "victim-pw" }; // another client user
const VICTIM_INBOX = "_INBOX_victim";

interface Setup extends AsyncDisposable {
  prefix: string;
  nats: NatsCluster;
  url: string;
  /** A node-user NKey seed (the hosting node connects with it). */
  nodeSeed: string;
}

function freshPrefix(): string {
  return `a${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
}

async function lockedDown(extra = "", account?: string): Promise<Setup> {
  const prefix = freshPrefix();
  const kp = nkeys.createUser();
  const config = natsAuthConfig({
    prefix,
    nodes: [NODE, EDGE, { nkey: kp.getPublicKey() }],
    clients: [
      { ...GW, inboxPrefix: GW_INBOX },
      { ...LIMITED, call: ["echo"] },
      { ...VICTIM, inboxPrefix: VICTIM_INBOX },
    ],
    ...(account === undefined ? {} : { account }),
  });
  const nats = await startNatsCluster({ config: config + extra, websocket: false });
  return {
    prefix,
    nats,
    url: nats.urls[0]!,
    nodeSeed: new TextDecoder().decode(kp.getSeed()),
    [Symbol.asyncDispose]: () => nats.stop(),
  };
}

function mesh(s: Setup, auth: Partial<NatsMeshOptions>): ReturnType<typeof natsMesh> {
  return natsMesh({ servers: s.url, prefix: s.prefix, leaseTtl: 2000, ...auth });
}

/**
 * A node (NKey user) hosting Counter and the Echo worker, accepting the reply subjects of
 * requests from client accounts, and a Troupe client system (user/pass node user).
 */
async function systems(s: Setup): Promise<{ node: System; client: System } & AsyncDisposable> {
  const journal = memoryJournal();
  const started: System[] = [];
  const close = async () => {
    for (const sys of started.reverse()) await sys.close();
    await journal.close();
  };
  try {
    started.push(
      await createSystem({
        actors: [Counter, Echo],
        mesh: mesh(s, { nkeySeed: s.nodeSeed }),
        journal,
        node: "n1",
        logger: "error",
        replyPrefixes: ["_INBOX", NATS_SERVICE_REPLY_PREFIX],
      }),
    );
    started.push(
      await createSystem({ actors: [], mesh: mesh(s, EDGE), journal, node: "c1", logger: "error" }),
    );
  } catch (err) {
    await close();
    throw err;
  }
  return { node: started[0]!, client: started[1]!, [Symbol.asyncDispose]: close };
}

/** A plain NATS client (the gw user by default), with the permission errors the server reported. */
async function gateway(
  s: Setup,
  inboxPrefix: string | null = GW_INBOX,
  user: { user: string; pass: string } = GW,
): Promise<{ nc: NatsConnection; errors: string[] } & AsyncDisposable> {
  const nc = await connect({
    servers: s.url,
    ...user,
    ...(inboxPrefix === null ? {} : { inboxPrefix }),
    timeout: 5000,
  });
  const errors: string[] = [];
  const loop = (async () => {
    for await (const st of nc.status() as AsyncIterable<Status>) {
      if (st.type === "error") errors.push(String(st.error));
    }
  })();
  return {
    nc,
    errors,
    [Symbol.asyncDispose]: async () => {
      await nc.close();
      await loop;
    },
  };
}

/** Waits until `check` holds, at most `ms`. */
async function eventually(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `p`, or a failure after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const unjson = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b));

/** A raw `ask` request's body, in JSON (the core's wire format, through tests/_wire.ts). */
function ask(type: string, id: string, handler: string, payload: unknown) {
  return rawBody({ type, id, handler, contentType: "application/json" }, json(payload));
}

/** The value of a raw reply (status byte 0, then JSON), or a failure naming the status. */
function okValue(data: Uint8Array): unknown {
  assert.equal(data[0], 0, `reply status ${data[0]}: ${new TextDecoder().decode(data)}`);
  return unjson(data.subarray(1));
}

Deno.test("locked-down NATS: node users host and call; a client user requests workers and actors", async () => {
  await using s = await lockedDown();
  await using sys = await systems(s);
  // a Troupe client system (node identity "edge") reaches the actor on the NKey node
  assert.equal(await sys.client.ref(Counter, "c").ask("add", 2), 2);
  // a plain client user (its own account) requests the worker and gets the answer
  await using gw = await gateway(s);
  const reply = await gw.nc.request(`${s.prefix}.w.echo`, ask("echo", "", "say", { n: 3 }), {
    timeout: 5000,
  });
  assert.deepEqual(okValue(reply.data), { n: 3 });
  // and an actor of a type it may call, on the node that hosts it (any node: a node that does
  // not own the actor answers with a redirect)
  const added = await gw.nc.request(`${s.prefix}.n.n1.counter`, ask("counter", "c", "add", 3), {
    timeout: 5000,
  });
  assert.equal(okValue(added.data), 5);
  assert.equal(await sys.client.ref(Counter, "c").ask("get", undefined), 5);
  assert.deepEqual(gw.errors, []);
  // with nats.js's default inbox prefix too: the client's account is its own
  await using plain = await gateway(s, null, LIMITED);
  const again = await plain.nc.request(`${s.prefix}.w.echo`, ask("echo", "", "say", "hi"), {
    timeout: 5000,
  });
  assert.equal(okValue(again.data), "hi");
});

Deno.test("locked-down NATS: the nodes' account may have any name, with the same rights", async () => {
  await using s = await lockedDown("", "TRP");
  await using sys = await systems(s);
  assert.equal(await sys.client.ref(Counter, "c").ask("add", 2), 2);
  await using gw = await gateway(s);
  const reply = await gw.nc.request(`${s.prefix}.w.echo`, ask("echo", "", "say", 5), {
    timeout: 5000,
  });
  assert.equal(okValue(reply.data), 5);
  const closed = await within(gw.nc.subscribe(`${s.prefix}.n.>`).closed, 5000, "refusal");
  assert.ok(closed instanceof natsErrors.PermissionViolationError, String(closed));
  await assert.rejects(
    gw.nc.request("$JS.API.INFO", new Uint8Array(), { timeout: 3000 }),
    /Permissions Violation/,
  );
});

Deno.test("natsAuthConfig: refuses what would not work", () => {
  const nodes = [NODE];
  assert.throws(() => natsAuthConfig({ nodes: [] }), /without node users/);
  assert.throws(() => natsAuthConfig({ prefix: "a.b", nodes }), /prefix/);
  assert.throws(() => natsAuthConfig({ nodes, clients: [{ ...NODE }] }), /twice/);
  assert.throws(
    () => natsAuthConfig({ nodes, clients: [{ ...GW, inboxPrefix: "_INBOX_gw.>" }] }),
    /not a subject prefix/,
  );
  assert.throws(() => natsAuthConfig({ nodes: [{ nkey: "SU123" }] }), /nkey/);
  assert.throws(() => natsAuthConfig({ nodes, account: "a b" }), /account/);
  assert.throws(
    () => natsAuthConfig({ nodes, clients: [{ user: "a.b", pass: "x" }] }),
    /give one as account/,
  );
  assert.throws(
    () => natsAuthConfig({ nodes, clients: [{ ...GW, account: "TROUPE" }] }),
    /not its own/,
  );
  const text = natsAuthConfig({
    prefix: "p",
    nodes,
    clients: [{ ...GW, call: ["account"], publishTopics: ["orders.>"] }],
  });
  assert.match(
    text,
    /publish: \{ allow: \["p\.n\.\*\.account", "p\.w\.account", "p\.t\.orders\.>"\] \}/,
  );
  assert.match(text, /subscribe: \{ allow: \["_INBOX\.>"\] \}/);
  assert.match(text, /\{ service: "p\.n\.\*\.account", accounts: \["TROUPE_gw"\] \}/);
  assert.match(text, /\{ service: \{ account: "TROUPE", subject: "p\.w\.account" \} \}/);
  assert.doesNotMatch(text, /allow_responses|p\.a\./);
});

Deno.test("locked-down NATS: a client user cannot write the directory's buckets", async () => {
  await using s = await lockedDown();
  await using sys = await systems(s);
  await using gw = await gateway(s);
  const bucket = `${s.prefix}_nodes`;
  // a raw publish onto the bucket's stream subject
  gw.nc.publish(`$KV.${bucket}.evil`, json({ node: "evil" }));
  await gw.nc.flush();
  await eventually(
    () => gw.errors.some((e) => e.includes(`Publish to "$KV.${bucket}.evil"`)),
    5000,
    "the permissions violation",
  );
  // through the KV client: its JetStream API calls are refused
  const kvm = new Kvm(gw.nc);
  await assert.rejects(
    async () => {
      const kv = await kvm.open(bucket);
      await kv.put("evil2", json({ node: "evil" }));
    },
    (err: Error) => /Permissions Violation for Publish to "\$(JS\.API|KV)\./.test(String(err)),
  );
  // nothing was written
  const conn = await mesh(s, NODE).connect({ node: "reader" });
  try {
    const kv = await conn.kv(bucket);
    assert.equal(await kv.get("evil") ?? null, null);
    assert.equal(await kv.get("evil2") ?? null, null);
    assert.ok(await kv.get("n1"), "the node's own heartbeat is there");
  } finally {
    await conn.close();
  }
  assert.ok(sys.node.directory.nodes().every((n) => n.id !== "evil"));
});

Deno.test("locked-down NATS: a client user cannot subscribe to node or worker subjects or swallow requests", async () => {
  await using s = await lockedDown();
  await using sys = await systems(s);
  await using gw = await gateway(s);
  const swallowed: string[] = [];
  const sub = gw.nc.subscribe(`${s.prefix}.n.>`, {
    callback: (e, m) => void (e ? undefined : swallowed.push(m.subject)),
  });
  const workers = gw.nc.subscribe(`${s.prefix}.w.>`, { queue: "w-echo" });
  const [closed, closedW] = await within(
    Promise.all([sub.closed, workers.closed]),
    5000,
    "the subscriptions to be refused",
  );
  assert.ok(closed instanceof natsErrors.PermissionViolationError, String(closed));
  assert.match(String(closed), /Subscription to ".*\.n\.>"/);
  assert.ok(closedW instanceof natsErrors.PermissionViolationError, String(closedW));
  // requests still reach the node, none reached the client
  for (let i = 0; i < 5; i++) await sys.client.ref(Counter, "x").ask("add", 1);
  assert.equal(await sys.client.ref(Counter, "x").ask("get", undefined), 5);
  for (let i = 0; i < 5; i++) {
    const r = await gw.nc.request(`${s.prefix}.w.echo`, ask("echo", "", "say", i), {
      timeout: 5000,
    });
    assert.equal(okValue(r.data), i);
  }
  assert.deepEqual(swallowed, []);
});

Deno.test("locked-down NATS: a client user cannot reach node control, types outside call, JetStream, or others' inboxes", async () => {
  await using s = await lockedDown();
  await using sys = await systems(s);
  await using lim = await gateway(s, null, LIMITED); // call: ["echo"]
  // node-to-node control and an actor type not in its call list: denied
  lim.nc.publish(`${s.prefix}.c.n1`, json(1));
  await assert.rejects(
    lim.nc.request(`${s.prefix}.n.n1.counter`, ask("counter", "y", "add", 1), {
      timeout: 3000,
    }),
    /Permissions Violation for Publish to ".*\.n\.n1\.counter"/,
  );
  await eventually(
    () => lim.errors.some((e) => /Publish to ".*\.c\.n1"/.test(e)),
    5000,
    "the publish violation",
  );
  // the JetStream API: denied
  await assert.rejects(
    lim.nc.request("$JS.API.INFO", new Uint8Array(), { timeout: 3000 }),
    /Permissions Violation for Publish to "\$JS\.API\.INFO"/,
  );
  // subscribing outside its inbox prefix (another client's, a node's, everything): denied
  await using gw = await gateway(s);
  for (const subject of ["_INBOX.>", VICTIM_INBOX + ".>", ">"]) {
    const closed = await within(gw.nc.subscribe(subject).closed, 5000, `${subject} refused`);
    assert.ok(closed instanceof natsErrors.PermissionViolationError, `${subject}: ${closed}`);
  }
  // the worker it may call still answers
  const r = await lim.nc.request(`${s.prefix}.w.echo`, ask("echo", "", "say", 7), {
    timeout: 5000,
  });
  assert.equal(okValue(r.data), 7);
  assert.equal(await sys.client.ref(Counter, "y").ask("get", undefined), 0, "nothing was added");
});

Deno.test("locked-down NATS: a client allowed only echo cannot reach another type by naming it in the envelope", async () => {
  await using s = await lockedDown();
  await using sys = await systems(s);
  await using lim = await gateway(s, null, LIMITED); // call: ["echo"]
  // On the subjects it may publish to (echo's node inbox and queue), an envelope naming counter:
  // refused, nothing runs, nothing is activated.
  for (const subject of [`${s.prefix}.n.n1.echo`, `${s.prefix}.w.echo`]) {
    const r = await lim.nc.request(subject, ask("counter", "forged", "add", 5), { timeout: 5000 });
    assert.equal(r.data[0], 1, `${subject}: an error reply`);
    const err = unjson(r.data.subarray(1)) as { code: string; message: string };
    assert.equal(err.code, "bad_payload", subject);
    assert.match(err.message, /arrived on the subject of "echo"/);
  }
  assert.equal(await sys.client.directory.locate(Counter, "forged"), undefined, "not activated");
  assert.equal(await sys.client.ref(Counter, "forged").ask("get", undefined), 0, "nothing added");
  assert.deepEqual(lim.errors, []);
});

Deno.test("locked-down NATS: replies are bound to the requester; a reply subject naming another client's inbox reaches no one else", async () => {
  await using s = await lockedDown();
  await using sys = await systems(s);
  await using gw = await gateway(s); // the attacker, inbox prefix _INBOX_gw
  await using victim = await gateway(s, VICTIM_INBOX, VICTIM);
  const stolen: string[] = [];
  victim.nc.subscribe(`${VICTIM_INBOX}.>`, {
    callback: (e, m) => void (e ? undefined : stolen.push(new TextDecoder().decode(m.data))),
  });
  await victim.nc.flush();
  // a real node (the Echo worker) is asked to answer into the victim's inbox
  gw.nc.publish(`${s.prefix}.w.echo`, ask("echo", "", "say", "forged"), {
    reply: `${VICTIM_INBOX}.stolen`,
  });
  // the attacker's own request after it (same connection, same worker queue: answered after)
  const own = await gw.nc.request(`${s.prefix}.w.echo`, ask("echo", "", "say", "mine"), {
    timeout: 5000,
  });
  assert.equal(okValue(own.data), "mine");
  // everything the server routed to the victim before has arrived once its round trip is done
  await victim.nc.flush();
  assert.deepEqual(stolen, []);
  // a raw node user standing in for a node (any wire format): it sees a reply subject the
  // server made, answers twice, and publishes into the victim's inbox prefix directly
  const nodeConn = await connect({ servers: s.url, ...NODE, timeout: 5000 });
  try {
    const seenReplies: string[] = [];
    nodeConn.subscribe(`${s.prefix}.n.*.probe`, {
      callback: (e, m) => {
        if (e || !m.reply) return;
        seenReplies.push(m.reply);
        m.respond(json("first"));
        m.respond(json("second"));
        nodeConn.publish(`${VICTIM_INBOX}.direct`, json("direct")); // no route into accounts
      },
    });
    await nodeConn.flush();
    gw.nc.publish(`${s.prefix}.n.n9.probe`, json(1), { reply: `${VICTIM_INBOX}.probe` });
    const answers: string[] = [];
    const inbox = `${GW_INBOX}.probe2`;
    gw.nc.subscribe(inbox, { callback: (e, m) => void (e ? 0 : answers.push(unjson(m.data))) });
    gw.nc.publish(`${s.prefix}.n.n9.probe`, json(2), { reply: inbox });
    await gw.nc.flush();
    await eventually(() => answers.length > 0, 5000, "the probe's answer");
    assert.ok(
      seenReplies.length === 2 &&
        seenReplies.every((r) => r.startsWith(`${NATS_SERVICE_REPLY_PREFIX}.`)),
      `the node saw reply subjects the server made: ${seenReplies}`,
    );
    // one answer per request: the mapping ends with the first (the node's second answer and
    // its direct publishes were handled by the server before its flush returned)
    await nodeConn.flush();
    await gw.nc.flush();
    assert.deepEqual(answers, ["first"]);
  } finally {
    await nodeConn.close();
  }
  await victim.nc.flush();
  assert.deepEqual(stolen, []);
  assert.deepEqual(gw.errors, []);
  assert.ok(sys.node.directory.nodes().length > 0);
});

Deno.test("locked-down NATS: a reply subject naming a JetStream or KV API lands in the client's own account", async () => {
  await using s = await lockedDown();
  await using sys = await systems(s);
  await using gw = await gateway(s);
  const subject = `${s.prefix}.w.echo`;
  // the node may write these in its account; the client names them as its reply subject
  gw.nc.publish(subject, ask("echo", "", "say", { node: "forged" }), {
    reply: `$KV.${s.prefix}_nodes.forged`,
  });
  gw.nc.publish(subject, ask("echo", "", "say", {}), {
    reply: `$JS.API.STREAM.PURGE.KV_${s.prefix}_nodes`, // a purge of the membership bucket
  });
  await gw.nc.flush();
  assert.equal(await sys.client.ref(Counter, "r").ask("add", 1), 1);
  // the requests above were answered before this one (one worker queue, in order)
  const r = await gw.nc.request(subject, ask("echo", "", "say", 1), {
    timeout: 5000,
  });
  assert.equal(okValue(r.data), 1);
  const conn = await mesh(s, NODE).connect({ node: "reader" });
  try {
    assert.equal(await (await conn.kv(`${s.prefix}_nodes`)).get("forged") ?? null, null);
    const jsm = await (conn as NatsMeshConnection).jsm();
    const info = await jsm.streams.info(`KV_${s.prefix}_nodes`);
    assert.ok(info.state.messages >= 1, "the membership bucket was not purged");
  } finally {
    await conn.close();
  }
});

Deno.test("locked-down NATS: wrong credentials fail connect at once with NatsAuthError", async () => {
  await using s = await lockedDown();
  const cases: Partial<NatsMeshOptions>[] = [
    { user: NODE.user, pass: "wrong" },
    { user: "nobody", pass: "x" },
    { nkeySeed: new TextDecoder().decode(nkeys.createUser().getSeed()) }, // unknown NKey
    {}, // no credentials at all
  ];
  for (const auth of cases) {
    const start = performance.now();
    const err = await mesh(s, { ...auth, connectTimeout: 10_000 }).connect({ node: "bad" }).then(
      (c) => c.close().then(() => assert.fail(`connected with ${JSON.stringify(auth)}`)),
      (e) => e,
    );
    assert.ok(err instanceof NatsAuthError, `${JSON.stringify(auth)}: ${err}`);
    assert.ok(err.message.includes(s.url), err.message);
    assert.match(err.message, /refused its credentials/);
    assert.deepEqual(err.servers, [s.url]);
    assert.ok(performance.now() - start < 3000, `failed fast (${performance.now() - start} ms)`);
  }
  // options that cannot work fail at once, without naming the secret
  assert.throws(() => natsMesh({ servers: s.url, nkeySeed: "not-a-seed" }), /nkeySeed/);
  assert.throws(
    () => natsMesh({ servers: s.url, user: "u", pass: "p", token: "t" }),
    /Cannot combine user\/pass and token/,
  );
  await assert.rejects(
    natsMesh({ servers: s.url, credsFile: "/nonexistent/x.creds" }).connect({ node: "c" }),
    /Cannot read the NATS creds file "\/nonexistent\/x.creds"/,
  );
});

Deno.test("natsMesh: creds and credsFile authenticate (the file's NKey seed signs the nonce)", async () => {
  // The server here is not in operator (JWT) mode: it checks the NKey and ignores the JWT, so
  // this covers reading and parsing the creds, not JWT validation (that is the server's).
  await using s = await lockedDown();
  const creds = [
    "-----BEGIN NATS USER JWT-----",
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA",
    "------END NATS USER JWT------",
    "",
    "-----BEGIN USER NKEY SEED-----",
    s.nodeSeed,
    "------END USER NKEY SEED------",
    "",
  ].join("\n");
  const dir = await Deno.makeTempDir({ prefix: "troupe-creds-" });
  try {
    await Deno.writeTextFile(`${dir}/node.creds`, creds);
    for (const auth of [{ creds }, { credsFile: `${dir}/node.creds` }]) {
      const conn = await mesh(s, auth).connect({ node: "creds" });
      try {
        const kv = await conn.kv(`${s.prefix}_leases`);
        await kv.put("k", json(1));
      } finally {
        await conn.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("natsMesh inboxPrefix: a mesh connection limited to its own inbox prefix works", async () => {
  // a client identity whose only subscriptions are `_INBOX_gw.>`: requests, inboxes and the
  // mux all use the prefix (a connection that did not would fail on its first request)
  await using s = await lockedDown();
  await using _sys = await systems(s);
  const conn = await mesh(s, { ...GW, inboxPrefix: GW_INBOX }).connect({ node: "gw" });
  try {
    assert.ok(conn.inbox().startsWith(`${GW_INBOX}.`));
    const reply = await conn.request(`${s.prefix}.w.echo`, ask("echo", "", "say", 5), {
      timeout: 5000,
    });
    assert.equal(okValue(reply.data), 5);
  } finally {
    await conn.close();
  }
});

Deno.test("locked-down NATS: the cluster behaviour suite with node users", async (t) => {
  await clusterSteps(t, async () => {
    const s = await lockedDown();
    const users = [NODE, EDGE];
    let i = 0;
    return {
      mesh: () => mesh(s, users[i++ % 2]!),
      cleanup: () => s.nats.stop(),
    };
  });
});

/** A CA and a server certificate for 127.0.0.1, made with openssl in `dir`. */
async function makeCerts(dir: string): Promise<void> {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    })
      .output();
    if (!out.success) {
      throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
    }
  };
  await run(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=troupe test CA",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
  );
  await run(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
  );
  // nats.js upgrades the socket without a server name when the URL's host is an IP address,
  // and node:tls then checks the certificate against "localhost": name both
  await Deno.writeTextFile(`${dir}/ext.cnf`, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await run(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    "ext.cnf",
    "-out",
    "server.pem",
  );
}

Deno.test("natsMesh tls: a tls:// server with a private CA and credentials", async () => {
  const dir = await Deno.makeTempDir({ prefix: "troupe-tls-" });
  try {
    await makeCerts(dir);
    await using s = await lockedDown(
      `tls { cert_file: ${JSON.stringify(`${dir}/server.pem`)}, ` +
        `key_file: ${JSON.stringify(`${dir}/server.key`)}, timeout: 2 }`,
    );
    const url = s.url.replace("nats://", "tls://");
    // trusted through the CA file, or the CA text
    const ca = await Deno.readTextFile(`${dir}/ca.pem`);
    for (const tls of [{ caFile: `${dir}/ca.pem` }, { ca }]) {
      const conn = await natsMesh({ servers: url, prefix: s.prefix, ...NODE, tls })
        .connect({ node: "tls" });
      try {
        const kv = await conn.kv(`${s.prefix}_leases`);
        await kv.put("k", json(1));
        assert.equal(unjson((await kv.get("k"))!.value), 1);
      } finally {
        await conn.close();
      }
    }
    // without the CA the server's certificate is refused: connect fails within its timeout
    const start = performance.now();
    await assert.rejects(
      natsMesh({ servers: url, prefix: s.prefix, ...NODE, connectTimeout: 1500 })
        .connect({ node: "untrusted" }),
      (err: Error) => err.message.includes(url) && /certificate|self.signed|TLS/i.test(err.message),
    );
    assert.ok(performance.now() - start < 5000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("natsMesh tls: a tls:// URL refuses a server without TLS (no credentials in clear)", async () => {
  await using s = await lockedDown();
  const url = s.url.replace("nats://", "tls://");
  await assert.rejects(
    natsMesh({ servers: url, prefix: s.prefix, ...NODE, connectTimeout: 1000 })
      .connect({ node: "downgraded" }),
    (err: Error) => err.message.includes(url) && /does not support 'tls'/.test(err.message),
  );
});
