/**
 * Feeds and projections on a real nats-server and a libSQL file journal shared by the nodes
 * (each node with its own connection; one node in its own process): the same behaviour as
 * tests/events_test.ts on the in-process mesh. A feed yields every event once, in commit
 * order, whichever node wrote it, resumes after a position and follows live events; a
 * projection whose node is killed with kill -9 in the middle of an event resumes on another
 * node right after its last checkpoint: only the event in flight is handled again, none is
 * skipped, and its store holds each event once.
 */
import assert from "node:assert/strict";
import { defineActor, type System } from "../mod.ts";
import {
  type NatsCluster,
  type NodeProcess,
  startNatsCluster,
  startNodeProcess,
  startSystems,
  type TestSystems,
} from "../adapters/testing/mod.ts";
import { Account } from "../examples/bank/actors.ts";
import { waitFor } from "./helpers.ts";

const PROJECTION_NODE = new URL("./nodes/projection_node.ts", import.meta.url);
/** Lease TTL of every node: a killed node's projection lease lapses after about this. */
const TTL = 1500;

const Other = defineActor({
  name: "other",
  initialState: () => 0,
  events: { bumped: (n: number, _e: null) => n + 1 },
  handlers: {
    bump(ctx) {
      ctx.emit("bumped", null);
      return ctx.state;
    },
  },
});

/** A NATS server, a temp libSQL file and a fresh prefix for one test; `run` then cleanup. */
async function withSetup(
  run: (s: { nats: NatsCluster; url: string; prefix: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "troupe-events-nats-" });
  const nats = await startNatsCluster({ servers: 1, websocket: false });
  try {
    await run({
      nats,
      url: `file:${dir}/events.db`,
      prefix: `ev${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`,
    });
  } finally {
    await nats.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

const amountOf = (payload: unknown) => (payload as { amount: number }).amount;

Deno.test("feed on NATS + libSQL, two nodes writing: every event once in commit order, each actor in seq order; resumes after a position, then live", async () => {
  await withSetup(async ({ nats, url, prefix }) => {
    await using systems = await startSystems({
      actors: [Account, Other],
      nodes: 2,
      nats,
      journal: url,
      prefix,
      leaseTtl: TTL,
    });
    const { client } = systems;
    const [n0, n1] = systems.nodes as [System, System];
    const expected: string[] = [];
    for (let i = 0; i < 40; i++) {
      const id = `a${i % 8}`;
      await client.ref(Account, id).ask("deposit", { amount: i + 1 });
      expected.push(`${id}:${i + 1}`);
      if (i % 3 === 0) await client.ref(Other, "x").ask("bump"); // another type: not in the feed
    }
    const hosts = new Set<string | undefined>();
    for (let a = 0; a < 8; a++) hosts.add(await client.directory.locate(Account, `a${a}`));
    assert.deepEqual([...hosts].sort(), ["node-0", "node-1"], "both nodes wrote events");

    // Read by a node (its own connection to the file), not one of the writers' turns.
    const seen: { key: string; position: string; seq: number; id: string }[] = [];
    for await (const e of n1.feed(Account, { live: false })) {
      assert.equal(e.type, "deposited");
      seen.push({
        key: `${e.id}:${amountOf(e.payload)}`,
        position: e.position,
        seq: e.seq,
        id: e.id,
      });
    }
    assert.deepEqual(seen.map((s) => s.key), expected, "every event once, in commit order");
    for (let a = 0; a < 8; a++) {
      const seqs = seen.filter((s) => s.id === `a${a}`).map((s) => s.seq);
      assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `a${a} in seq order`);
    }
    // Resume after the 15th, on the other node: the 16th on, none repeated or skipped.
    const rest: string[] = [];
    for await (const e of n0.feed(Account, { after: seen[14]!.position, live: false })) {
      rest.push(`${e.id}:${amountOf(e.payload)}`);
    }
    assert.deepEqual(rest, expected.slice(15));

    // Live: a feed that caught up sees the events both nodes commit next, in order.
    const controller = new AbortController();
    const live: string[] = [];
    const reading = (async () => {
      for await (
        const e of client.feed(Account, {
          after: seen.at(-1)!.position,
          signal: controller.signal,
          pollMs: 20,
        })
      ) {
        live.push(`${e.id}:${amountOf(e.payload)}`);
        if (live.length === 8) controller.abort();
      }
    })();
    const more: string[] = [];
    for (let a = 0; a < 8; a++) {
      await client.ref(Account, `a${a}`).ask("deposit", { amount: 1000 + a });
      more.push(`a${a}:${1000 + a}`);
    }
    await waitFor(() => live.length === 8, 10_000, "the live events");
    await reading;
    assert.deepEqual(live, more);
  });
});

Deno.test("projection on NATS + libSQL: its node killed with kill -9 mid-event, another node resumes after its checkpoint; each event once in its store", async () => {
  await withSetup(async ({ nats, url, prefix }) => {
    let systems: TestSystems | undefined;
    let child: NodeProcess | undefined;
    try {
      systems = await startSystems({
        actors: [Account],
        nodes: 1,
        nats,
        journal: url,
        prefix,
        leaseTtl: TTL,
      });
      const { client } = systems;
      const node = systems.nodes[0]!;
      for (let i = 0; i < 20; i++) {
        await client.ref(Account, `p${i % 3}`).ask("deposit", { amount: i + 1 });
      }
      const expected: string[] = [];
      for await (const e of client.feed(Account, { live: false })) {
        expected.push(`${e.id}:${e.seq}`);
      }
      assert.equal(expected.length, 20);

      // The node process runs it, and hangs in its 8th event (stored, not checkpointed).
      child = await startNodeProcess({
        script: PROJECTION_NODE,
        env: {
          TROUPE_SERVERS: nats.urls[0]!,
          TROUPE_JOURNAL: url,
          TROUPE_NODE: "proj",
          TROUPE_PREFIX: prefix,
          TROUPE_LEASE_TTL: String(TTL),
          PROJECTION_HANG_AT: "8",
        },
        readyTimeout: 30_000,
      });
      assert.equal(
        await child.waitForLine(/^HANG /, 15_000, { past: true }),
        `HANG ${expected[7]}`,
      );
      const onA = child.lines().filter((l) => l.startsWith("HANDLED ")).map((l) => l.slice(8));
      assert.deepEqual(onA, expected.slice(0, 7), "the first seven, in order");

      // This node stands by; while the process holds the lease it handles nothing.
      const store = client.store<number>("balances-view");
      const onB: string[] = [];
      const projection = node.projection("balances", {
        from: [Account],
        pollMs: 20,
        async handle(e) {
          const key = `${e.id}:${e.seq}`;
          await store.set(key, amountOf(e.payload));
          onB.push(key);
        },
      });
      try {
        assert.equal(onB.length, 0);
        child.kill("SIGKILL");
        assert.equal((await child.exited).signal, "SIGKILL");
        await waitFor(() => onB.length >= 13, 15_000, "the standby node to handle the rest");
        assert.equal(projection.running, true);
        // It starts right after the last checkpoint: the event in flight at the kill again,
        // then the rest; nothing skipped, nothing else repeated.
        assert.deepEqual(onB, expected.slice(7));
        // and follows new events live
        await client.ref(Account, "p0").ask("deposit", { amount: 100 });
        await waitFor(() => onB.length === 14, 10_000, "the live event");
        const p0 = expected.filter((k) => k.startsWith("p0:")).length;
        assert.deepEqual(onB, [...expected.slice(7), `p0:${p0 + 1}`]);
        await waitFor(
          () => projection.position !== undefined && projection.lag === 0,
          5_000,
          "lag 0",
        );

        const records: string[] = [];
        for await (const r of store.list({ limit: 1000 })) records.push(r.key);
        assert.deepEqual(records.sort(), [...expected, `p0:${p0 + 1}`].sort(), "each event once");
      } finally {
        await projection.stop();
      }
    } finally {
      child?.kill("SIGKILL");
      await child?.exited;
      await systems?.close();
    }
  });
});
