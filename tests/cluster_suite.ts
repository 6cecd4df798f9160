/**
 * Behaviour of a cluster of nodes, run against every mesh: the in-process mesh
 * (`cluster_test.ts`) and the NATS mesh (`adapters/nats/cluster_test.ts`).
 */
import assert from "node:assert/strict";
import { waitFor } from "./helpers.ts";
import { ActorError, createSystem, defineActor, type Mesh, type System } from "../mod.ts";
import { memoryJournal } from "../src/journal/memory.ts";
import type { Journal } from "../src/journal/types.ts";

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
  const journal = memoryJournal();
  const nodes: System[] = [];
  for (let i = 0; i < n; i++) {
    nodes.push(
      await createSystem({
        actors: [Account, Worker],
        journal,
        mesh: f.mesh(),
        node: `n${i}-${crypto.randomUUID().slice(0, 4)}`,
        logger: "error",
      }),
    );
  }
  const client = await createSystem({ actors: [], journal, mesh: f.mesh(), logger: "error" });
  await waitFor(() => client.directory.nodes().length >= n + 1, 5000, "nodes to see each other");
  return { nodes, client, journal };
}

async function stop({ nodes, client, journal }: Nodes): Promise<void> {
  await client.close();
  await Promise.all(nodes.map((n) => n.close()));
  await journal.close();
}

type Case = [title: string, fn: (f: ClusterFixture) => Promise<void>];

/** Registers the cluster behaviour tests for one mesh, one `Deno.test` each. */
export function clusterSuite(name: string, setup: () => Promise<ClusterFixture>): void {
  for (const [title, fn] of clusterCases()) {
    Deno.test(`${name}: ${title}`, async () => {
      const f = await setup();
      try {
        await fn(f);
      } finally {
        await f.cleanup();
      }
    });
  }
}

/** Runs the cluster behaviour tests as steps of one test (sharing e.g. one NATS cluster). */
export async function clusterSteps(
  t: Deno.TestContext,
  setup: () => Promise<ClusterFixture>,
): Promise<void> {
  for (const [title, fn] of clusterCases()) {
    await t.step(title, async () => {
      const f = await setup();
      try {
        await fn(f);
      } finally {
        await f.cleanup();
      }
    });
  }
}

function clusterCases(): Case[] {
  const cases: Case[] = [];
  const test = (title: string, fn: (f: ClusterFixture) => Promise<void>) =>
    void cases.push([title, fn]);

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
      const all: string[] = [];
      const grouped: string[] = [];
      const subs = [
        c.nodes[0]!.subscribe("orders.*", (_p, t) => void all.push(t)),
        c.nodes[1]!.subscribe("orders.>", () => void grouped.push("a"), { group: "billing" }),
        c.nodes[2]!.subscribe("orders.>", () => void grouped.push("b"), { group: "billing" }),
      ];
      await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; i < 10; i++) await c.client.publish("orders.created", { i });
      await waitFor(() => all.length === 10 && grouped.length === 10, 3000, "deliveries");
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(grouped.length, 10);
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
  return cases;
}
