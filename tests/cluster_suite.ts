/**
 * Behaviour of a cluster of nodes, run against every mesh: the in-process mesh
 * (`cluster_test.ts`) and the NATS mesh (`adapters/nats/cluster_test.ts`).
 */
import assert from "node:assert/strict";
import { codeOf, rawBody, rawRequest } from "./_wire.ts";
import { waitFor, within } from "./helpers.ts";
import {
  ActorError,
  createSystem,
  DeadlockError,
  defineActor,
  memoryJournal,
  type System,
  type SystemOptions,
} from "../mod.ts";
import type { Journal, Mesh } from "../spi.ts";

/** A fresh cluster for one test: `mesh()` gives each node its mesh. */
export interface ClusterFixture {
  mesh(): Mesh;
  /** The raw connection to send malformed messages with. */
  cleanup(): Promise<void>;
}

const activations = new Map<string, number>();
const produced = new Map<string, number>();

const Account = defineActor({
  name: "account",
  initialState: () => ({ balance: 0 }),
  events: { deposited: (s, e: { amount: number }) => ({ balance: s.balance + e.amount }) },
  handlers: {
    deposit(ctx, amount: number) {
      ctx.emit("deposited", { amount });
      return ctx.state.balance;
    },
    balance: (ctx) => ctx.state.balance,
    fail() {
      throw new ActorError("nope", { code: "my_code", data: { why: 1 } });
    },
    async *count(_ctx, n: number) {
      for (let i = 0; i < n; i++) yield i;
    },
    async *counted(ctx, n: number) {
      for (let i = 0; i < n; i++) {
        produced.set(ctx.id, (produced.get(ctx.id) ?? 0) + 1);
        yield i;
      }
    },
  },
  onActivate: (ctx) => {
    const key = `${ctx.type}/${ctx.id}`;
    activations.set(key, (activations.get(key) ?? 0) + 1);
  },
});

const Worker = defineActor({
  name: "worker",
  stateless: true,
  handlers: { who: (ctx) => ctx.node, echo: (_ctx, v: unknown) => v },
});

type Nodes = { nodes: System[]; client: System; journal: Journal };

async function cluster(f: ClusterFixture, n = 3): Promise<Nodes> {
  return await clusterOf(f, Array.from({ length: n }, () => [Account, Worker]));
}

/**
 * Starts one node per entry of `hosts` (hosting those types) and a client, all with the
 * `system` options, and waits until every one of them sees every other.
 */
async function clusterOf(
  f: ClusterFixture,
  hosts: NonNullable<SystemOptions["actors"]>[],
  system: Omit<SystemOptions, "actors" | "journal" | "mesh" | "node"> = {},
): Promise<Nodes> {
  const journal = memoryJournal();
  const nodes: System[] = [];
  const options = { logger: "error" as const, ...system };
  let client: System | undefined;
  try {
    for (const [i, actors] of hosts.entries()) {
      nodes.push(
        await createSystem({
          ...options,
          actors,
          journal,
          mesh: f.mesh(),
          node: `n${i}-${crypto.randomUUID().slice(0, 4)}`,
        }),
      );
    }
    client = await createSystem({ ...options, actors: [], journal, mesh: f.mesh() });
    const all = [...nodes, client];
    await waitFor(
      () => all.every((s) => s.directory.nodes().length >= all.length),
      5000,
      "nodes to see each other",
    );
    return { nodes, client, journal };
  } catch (err) {
    await client?.close();
    await Promise.allSettled(nodes.map((n) => n.close()));
    await journal.close();
    throw err;
  }
}

async function stop({ nodes, client, journal }: Nodes): Promise<void> {
  await client.close();
  await Promise.all(nodes.map((n) => n.close()));
  await journal.close();
}

/** A case; `ignore` keeps one that shows a known bug registered but not run. */
type Case = [title: string, fn: (f: ClusterFixture) => Promise<void>, ignore: boolean];

/** Registers the cluster behaviour tests for one mesh, one `Deno.test` each. */
export function clusterSuite(name: string, setup: () => Promise<ClusterFixture>): void {
  for (const [title, fn, ignore] of clusterCases()) {
    Deno.test({
      name: `${name}: ${title}`,
      ignore,
      fn: async () => {
        const f = await setup();
        try {
          await fn(f);
        } finally {
          await f.cleanup();
        }
      },
    });
  }
}

/** Runs the cluster behaviour tests as steps of one test (sharing e.g. one NATS cluster). */
export async function clusterSteps(
  t: Deno.TestContext,
  setup: () => Promise<ClusterFixture>,
): Promise<void> {
  for (const [title, fn, ignore] of clusterCases()) {
    await t.step({
      name: title,
      ignore,
      fn: async () => {
        const f = await setup();
        try {
          await fn(f);
        } finally {
          await f.cleanup();
        }
      },
    });
  }
}

function clusterCases(): Case[] {
  const cases: Case[] = [];
  const test = (
    title: string,
    fn: (f: ClusterFixture) => Promise<void>,
    options: { ignore?: boolean } = {},
  ) => void cases.push([title, fn, options.ignore ?? false]);

  test("a client reaches actors hosted on other nodes, each active on one node", async (f) => {
    const c = await cluster(f);
    try {
      const ids = Array.from({ length: 30 }, (_, i) => `acc-${i}-${crypto.randomUUID()}`);
      for (const id of ids) assert.equal(await c.client.ref(Account, id).ask("deposit", 5), 5);
      const where = new Map<string, number>();
      for (const id of ids) {
        const node = await c.client.directory.locate(Account, id);
        assert.ok(node, `${id} is located`);
        assert.notEqual(node, c.client.node, "a client never hosts");
        where.set(node, (where.get(node) ?? 0) + 1);
      }
      assert.equal(where.size, 3, `spread over all nodes: ${JSON.stringify([...where])}`);
      for (const id of ids) assert.equal(await c.nodes[0]!.ref(Account, id).ask("balance"), 5);
    } finally {
      await stop(c);
    }
  });

  test("concurrent first messages from many clients activate each actor once", async (f) => {
    const c = await cluster(f);
    try {
      const ids = Array.from({ length: 10 }, () => `race-${crypto.randomUUID()}`);
      const senders = [...c.nodes, c.client];
      await Promise.all(
        senders.flatMap((s) => ids.map((id) => s.ref(Account, id).ask("deposit", 1))),
      );
      for (const id of ids) {
        assert.equal(activations.get(`account/${id}`), 1, `${id} activated once`);
        assert.equal(await c.client.ref(Account, id).ask("balance"), senders.length);
      }
    } finally {
      await stop(c);
    }
  });

  test("a handler's error code, message and data cross the wire", async (f) => {
    const c = await cluster(f);
    try {
      await assert.rejects(c.client.ref(Account, "e1").ask("fail"), (err: unknown) => {
        assert.ok(err instanceof ActorError);
        assert.equal(err.code, "my_code");
        assert.equal(err.message, "nope");
        assert.deepEqual(err.data, { why: 1 });
        return true;
      });
      // deno-lint-ignore no-explicit-any
      await assert.rejects((c.client.ref(Account, "e1") as any).ask("missing"), {
        code: "unknown_handler",
      });
      const Ghost = defineActor({ name: "ghost", handlers: { boo: () => 1 } });
      await assert.rejects(c.client.ref(Ghost, "g").ask("boo"), { code: "unknown_actor_type" });
    } finally {
      await stop(c);
    }
  });

  test("closing a node hands its actors over with their state", async (f) => {
    const c = await cluster(f);
    try {
      const id = `handover-${crypto.randomUUID()}`;
      await c.client.ref(Account, id).ask("deposit", 7);
      const host = await c.client.directory.locate(Account, id);
      const node = c.nodes.find((n) => n.node === host)!;
      await node.close();
      c.nodes = c.nodes.filter((n) => n !== node);
      await waitFor(() => !c.client.directory.nodes().some((n) => n.id === host), 3000, "leave");
      assert.equal(await c.client.ref(Account, id).ask("deposit", 1), 8);
      const now = await c.client.directory.locate(Account, id);
      assert.ok(now && now !== host);
    } finally {
      await stop(c);
    }
  });

  test("streams across nodes deliver every item in order", async (f) => {
    const c = await cluster(f);
    try {
      const items: number[] = [];
      for await (const i of c.client.ref(Account, "s1").stream("count", 200, { window: 8 })) {
        items.push(i);
      }
      assert.deepEqual(items, Array.from({ length: 200 }, (_, i) => i));
      // cancel half-way
      let seen = 0;
      for await (const _ of c.client.ref(Account, "s1").stream("count", 1000)) {
        if (++seen === 5) break;
      }
      assert.equal(await c.client.ref(Account, "s1").ask("balance"), 0, "actor still serves");
    } finally {
      await stop(c);
    }
  });

  test("a slow consumer on another node slows the producer (credit flow control)", async (f) => {
    const c = await cluster(f);
    try {
      const id = `bp-${crypto.randomUUID()}`;
      const stream = c.client.ref(Account, id).stream("counted", 10_000, { window: 4 });
      const it = stream[Symbol.asyncIterator]();
      assert.equal((await it.next()).value, 0);
      await new Promise((r) => setTimeout(r, 300));
      const ahead = produced.get(id) ?? 0;
      assert.ok(ahead <= 12, `producer ran ahead by ${ahead} items with a window of 4`);
      await it.return!();
      await new Promise((r) => setTimeout(r, 100));
      assert.ok((produced.get(id) ?? 0) <= 13, "cancel stops the producer");
      assert.equal(await c.client.ref(Account, id).ask("balance"), 0, "the actor is free again");
    } finally {
      await stop(c);
    }
  });

  test("stateless workers are spread over the hosting nodes", async (f) => {
    const c = await cluster(f);
    try {
      const w = c.client.ref(Worker);
      const out = await Promise.all(Array.from({ length: 60 }, (_, i) => w.ask("echo", i)));
      assert.deepEqual(out, Array.from({ length: 60 }, (_, i) => i));
      const who = await Promise.all(Array.from({ length: 60 }, () => w.ask("who")));
      assert.equal(new Set(who).size, 3, "every hosting node took some");
      assert.ok(!who.includes(c.client.node), "a client node never runs workers");
      // an id is a routing hint: the same id goes to the same node
      const hinted = await Promise.all(
        Array.from({ length: 10 }, () => c.client.ref(Worker, "k").ask("who")),
      );
      assert.equal(new Set(hinted).size, 1);
    } finally {
      await stop(c);
    }
  });

  test("pub/sub crosses nodes; a group gets each message once", async (f) => {
    const c = await cluster(f);
    try {
      let all: string[] = []; // topics received (a late probe may still come: counted apart)
      let grouped: string[] = [];
      const subs = [
        c.nodes[0]!.subscribe("orders.*", (_p, t) => void all.push(t)),
        c.nodes[1]!.subscribe("orders.>", (_p, t) => void grouped.push(t), { group: "billing" }),
        c.nodes[2]!.subscribe("orders.>", (_p, t) => void grouped.push(t), { group: "billing" }),
      ];
      // On NATS a subscription reaches the other servers a moment later (interest crosses the
      // cluster's routes): probe until both the subscriber and the group get one, rather than
      // sleep and hope.
      await waitFor(
        async () => {
          await c.client.publish("orders.probe", {});
          return all.includes("orders.probe") && grouped.includes("orders.probe");
        },
        5_000,
        "the subscriptions to reach the client's server",
      );
      all = [];
      grouped = [];
      for (let i = 0; i < 10; i++) await c.client.publish("orders.created", { i });
      const created = (xs: string[]) => xs.filter((t) => t === "orders.created").length;
      await waitFor(() => created(all) === 10 && created(grouped) === 10, 3000, "deliveries");
      await new Promise((r) => setTimeout(r, 50)); // no duplicate comes after
      assert.equal(created(grouped), 10);
      for (const s of subs) s.unsubscribe();
    } finally {
      await stop(c);
    }
  });

  test("leases are exclusive across nodes with increasing fencing tokens", async (f) => {
    const c = await cluster(f);
    try {
      let inside = 0;
      let maxInside = 0;
      const tokens: number[] = [];
      await Promise.all(c.nodes.map((n) =>
        n.lock("job", async (lease) => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          tokens.push(lease.token);
          await new Promise((r) => setTimeout(r, 20));
          inside--;
        }, { ttl: 2000, timeout: 10_000 })
      ));
      assert.equal(maxInside, 1);
      assert.deepEqual(tokens, [...tokens].sort((a, b) => a - b));
      assert.equal(new Set(tokens).size, 3);
    } finally {
      await stop(c);
    }
  });

  test("directory.watch() sees a node join and leave", async (f) => {
    const c = await cluster(f, 1);
    try {
      const events: string[] = [];
      const it = c.client.directory.watch()[Symbol.asyncIterator]();
      const reader = (async () => {
        for (;;) {
          const r = await it.next();
          if (r.done) return;
          if (r.value.type === "node_joined" || r.value.type === "node_left") {
            events.push(`${r.value.type}:${r.value.node.id}`);
          }
        }
      })();
      const extra = await createSystem({ actors: [Account], mesh: f.mesh(), node: "late" });
      await waitFor(() => events.includes("node_joined:late"), 3000, "join");
      await extra.close();
      await waitFor(() => events.includes("node_left:late"), 3000, "leave");
      await it.return!();
      await reader;
    } finally {
      await stop(c);
    }
  });
  test("tell reaches an actor on another node, resolving once accepted, in order", async (f) => {
    const gate = Promise.withResolvers<void>();
    const started = Promise.withResolvers<void>();
    const Inbox = defineActor({
      name: "inbox",
      initialState: () => ({ items: [] as string[] }),
      handlers: {
        async put(ctx, item: string) {
          if (item === "wait") {
            started.resolve();
            await gate.promise;
          }
          ctx.state.items.push(item);
        },
        items: (ctx) => ctx.state.items,
      },
    });
    const c = await clusterOf(f, [[Inbox], [Inbox]]);
    try {
      const box = c.client.ref(Inbox, `box-${crypto.randomUUID()}`);
      await within(box.tell("put", "a"), 5_000, "the first tell to be accepted");
      assert.deepEqual(await box.ask("items"), ["a"], "handled before a later ask");
      const host = await c.client.directory.locate(Inbox, box.id);
      assert.ok(host && c.nodes.some((n) => n.node === host), `hosted on a node: ${host}`);

      // Accepted is not handled: the tell resolves while its handler is still held.
      await within(box.tell("put", "wait"), 2_000, "the tell to be accepted");
      await within(started.promise, 2_000, "the handler to start");
      gate.resolve();

      // Many tells in flight from one sender are handled in the order sent.
      const sent = Array.from({ length: 20 }, (_, i) => `t${i}`);
      await Promise.all(sent.map((item) => box.tell("put", item)));
      assert.deepEqual(await box.ask("items"), ["a", "wait", ...sent]);

      // A message the actor cannot take is refused to the teller.
      // deno-lint-ignore no-explicit-any
      await assert.rejects((box as any).tell("missing"), { code: "unknown_handler" });
    } finally {
      gate.resolve();
      await stop(c);
    }
  });

  test("a tell resolves once accepted, even when its handler then throws", async (f) => {
    const Teller = defineActor({
      name: "teller",
      handlers: {
        ok: () => 1,
        fail() {
          throw new ActorError("no", { code: "refused" });
        },
      },
    });
    const c = await clusterOf(f, [[Teller], [Teller]]);
    try {
      const t = c.client.ref(Teller, `t-${crypto.randomUUID()}`);
      assert.equal(await t.ask("ok"), 1); // active and idle: the next message runs at once
      await t.tell("fail");
      assert.equal(await t.ask("ok"), 1, "the actor keeps serving");
    } finally {
      await stop(c);
    }
  });

  test("a stream whose handler throws gives the items, then the handler's error", async (f) => {
    const Feed = defineActor({
      name: "feed",
      handlers: {
        async *items(_ctx, n: number) {
          for (let i = 0; i < n; i++) yield i;
          throw new ActorError("feed broke", { code: "feed_broken", data: { after: n } });
        },
        async *crash() {
          yield "one";
          throw new Error("secret detail");
        },
      },
    });
    const c = await clusterOf(f, [[Feed], [Feed]], { logger: "silent" });
    try {
      const feed = c.client.ref(Feed, `feed-${crypto.randomUUID()}`);
      const got: number[] = [];
      let caught: unknown;
      try {
        for await (const i of feed.stream("items", 5, { window: 2 })) got.push(i);
      } catch (err) {
        caught = err;
      }
      assert.deepEqual(got, [0, 1, 2, 3, 4], "every item before the error");
      assert.ok(caught instanceof ActorError, `the stream ended with ${caught}`);
      assert.equal(caught.code, "feed_broken");
      assert.equal(caught.message, "feed broke");
      assert.deepEqual(caught.data, { after: 5 });

      const words: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const w of feed.stream("crash")) words.push(w);
        })(),
        { code: "internal", message: "Internal error" },
      );
      assert.deepEqual(words, ["one"]);
    } finally {
      await stop(c);
    }
  });

  test("a call chain that comes back across nodes (A → B → A) fails fast with deadlock", async (f) => {
    const Ping = defineActor({
      name: "ping",
      handlers: {
        async ping(ctx, depth: number): Promise<number> {
          if (depth === 0) return ctx.node.length;
          return await ctx.ref(Pong, ctx.id).ask("pong", depth - 1);
        },
      },
    });
    const Pong = defineActor({
      name: "pong",
      handlers: {
        async pong(ctx, depth: number): Promise<number> {
          return await ctx.ref(Ping, ctx.id).ask("ping", depth);
        },
      },
    });
    // Ping lives only on the first node, Pong only on the second: every hop crosses the mesh.
    const c = await clusterOf(f, [[Ping], [Pong]]);
    try {
      const p = c.client.ref(Ping, `p-${crypto.randomUUID()}`);
      const t0 = performance.now();
      await assert.rejects(p.ask("ping", 1, { timeout: 5_000 }), (err: unknown) => {
        assert.ok(err instanceof DeadlockError, `rejected with ${err}`);
        assert.equal(err.code, "deadlock");
        return true;
      });
      const ms = performance.now() - t0;
      assert.ok(ms < 2_000, `deadlock reported after ${ms} ms, not at once`);
      assert.equal(await c.client.directory.locate(Ping, p.id), c.nodes[0]!.node);
      assert.equal(await c.client.directory.locate(Pong, p.id), c.nodes[1]!.node);
      assert.equal(await p.ask("ping", 0), c.nodes[0]!.node.length, "both keep serving");
    } finally {
      await stop(c);
    }
  });

  test("a reply larger than maxPayload rejects with bad_payload; the node keeps serving", async (f) => {
    const Big = defineActor({
      name: "big",
      handlers: { reply: (_ctx, n: number) => "x".repeat(n) },
    });
    const c = await clusterOf(f, [[Big], [Big]], { maxPayload: 16 * 1024 });
    try {
      const b = c.client.ref(Big, `big-${crypto.randomUUID()}`);
      assert.equal((await b.ask("reply", 8 * 1024)).length, 8 * 1024);
      await assert.rejects(b.ask("reply", 32 * 1024), (err: unknown) => {
        assert.ok(err instanceof ActorError, `rejected with ${err}`);
        assert.equal(err.code, "bad_payload");
        return true;
      });
      assert.equal((await b.ask("reply", 8 * 1024)).length, 8 * 1024, "the actor still serves");
      const other = c.client.ref(Big, `big-${crypto.randomUUID()}`);
      assert.equal(await other.ask("reply", 3), "xxx", "the nodes still serve");
    } finally {
      await stop(c);
    }
  });

  test("deadlines and abort signals cross nodes", async (f) => {
    const seen = Promise.withResolvers<{ reason: unknown; ms: number }>();
    const started = Promise.withResolvers<void>();
    const gate = Promise.withResolvers<void>();
    const Remote = defineActor({
      name: "remote",
      handlers: {
        async wait(ctx) {
          const t0 = performance.now();
          const reason = await new Promise((resolve) => {
            const backstop = setTimeout(() => resolve("never aborted"), 3_000);
            ctx.signal.addEventListener("abort", () => {
              clearTimeout(backstop);
              resolve(ctx.signal.reason);
            }, { once: true });
          });
          seen.resolve({ reason, ms: performance.now() - t0 });
          // As `await delay(ms, ctx.signal)` would: fail with the reason rather than reply
          // just before the caller's own timer fires.
          if (reason instanceof Error) throw reason;
          if (reason instanceof Error) throw reason;
        },
        async hold() {
          started.resolve();
          await gate.promise;
          return "done";
        },
      },
    });
    const c = await clusterOf(f, [[Remote], [Remote]]);
    try {
      const r = c.client.ref(Remote, `r-${crypto.randomUUID()}`);
      // The handler on the other node sees the caller's deadline through ctx.signal.
      await assert.rejects(r.ask("wait", undefined, { timeout: 300 }), { code: "timeout" });
      const s = await within(seen.promise, 5_000, "the remote handler to observe the abort");
      assert.ok(s.reason instanceof ActorError && s.reason.code === "timeout", String(s.reason));
      assert.ok(s.ms < 1_500, `aborted after ${s.ms} ms, deadline 300 ms`);

      // The caller's own signal abandons a remote ask at once, with the signal's reason.
      const ac = new AbortController();
      const held = r.ask("hold", undefined, { signal: ac.signal, timeout: 10_000 });
      await within(started.promise, 2_000, "the remote handler to start");
      const reason = new Error("gave up");
      ac.abort(reason);
      await within(
        assert.rejects(held, (err: unknown) => err === reason),
        1_000,
        "the aborted ask to reject",
      );
      gate.resolve();
      assert.equal(await r.ask("hold"), "done", "the actor keeps serving");
    } finally {
      gate.resolve();
      await stop(c);
    }
  });

  test("ids over 256 bytes get bad_payload from caller and host, and no connection drops", async (f) => {
    const c = await cluster(f, 2);
    const mesh = f.mesh();
    const raw = await mesh.connect({ node: `raw-${crypto.randomUUID().slice(0, 4)}` });
    try {
      const long = "x".repeat(4100);
      // the caller refuses before anything reaches the mesh
      await assert.rejects(c.client.ref(Account, long).ask("balance"), { code: "bad_payload" });
      await assert.rejects(c.nodes[0]!.ref(Account, long).tell("deposit", 1), {
        code: "bad_payload",
      });
      // a foreign client puts the long id in the envelope, to a node's inbox: the host answers
      // bad_payload without claiming anything
      const host = c.nodes[1]!;
      const reply = await rawRequest(
        raw,
        `${mesh.prefix}.n.${host.node}.account`,
        rawBody({ type: "account", id: long, handler: "balance" }),
      );
      assert.equal(codeOf(reply), "bad_payload");
      // everyone is still connected and serving
      for (const s of [c.client, ...c.nodes]) {
        assert.equal(await s.ref(Account, `ok-${crypto.randomUUID()}`).ask("deposit", 3), 3);
      }
    } finally {
      await raw.close();
      await stop(c);
    }
  });
  return cases;
}
