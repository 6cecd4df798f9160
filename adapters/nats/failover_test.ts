/**
 * Failover across processes: bank nodes (tests/nodes/bank_node.ts) run as child processes on
 * a 3-server NATS cluster and share one libSQL file (WAL mode: the stand-in for a shared
 * remote database); the test process is a client. The nodes are crashed (`SIGKILL`), paused
 * past their lease (`SIGSTOP`), stopped gracefully (`SIGTERM`), and a NATS server is killed.
 * Measured figures are printed with console.log.
 */
import assert from "node:assert/strict";
import { delay, waitFor } from "../../tests/helpers.ts";
import { ActorError, createSystem, type System } from "../../mod.ts";
import { natsMesh } from "./mod.ts";
import {
  type NatsCluster,
  type NodeProcess,
  startNatsCluster,
  startNodeProcess,
} from "../testing/mod.ts";
import { Account } from "../../examples/bank/actors.ts";
import { Slowpoke } from "../../tests/nodes/slowpoke.ts";

const BANK = new URL("../../tests/nodes/bank_node.ts", import.meta.url);
const TTL = 1500;
/** The lease of the NATS-server-killed scenario: natsMesh's default. */
const C_TTL = 10_000;
/** The membership margin for TTL: `defaultMargin` of src/directory/membership.ts. */
const MARGIN = Math.min(1000, Math.max(250, TTL / 5));

/** One message per error code seen, for the report. */
const samples = new Map<string, string>();

function code(err: unknown): string {
  const c = err instanceof ActorError ? err.code : `non-ActorError: ${String(err)}`;
  if (!samples.has(c)) samples.set(c, err instanceof Error ? err.message : String(err));
  return c;
}

/** One scenario: its own prefix, journal file, node processes and client systems. */
class Scene {
  readonly prefix = `f${crypto.randomUUID().slice(0, 8)}`;
  readonly dir = Deno.makeTempDirSync({ prefix: "troupe-failover-" });
  readonly journal = `file:${this.dir}/bank.db`;
  readonly procs = new Map<string, NodeProcess>();
  readonly systems: System[] = [];
  constructor(readonly cluster: NatsCluster, readonly ttl = TTL) {}

  async node(
    id: string,
    server: number,
    env: Record<string, string> = {},
  ): Promise<NodeProcess> {
    const p = await startNodeProcess({
      script: BANK,
      env: {
        TROUPE_SERVERS: this.cluster.urls[server]!,
        TROUPE_JOURNAL: this.journal,
        TROUPE_NODE: id,
        TROUPE_PREFIX: this.prefix,
        TROUPE_LEASE_TTL: String(this.ttl),
        ...env,
      },
      readyTimeout: 60_000,
    });
    this.procs.set(id, p);
    return p;
  }

  async client(
    servers: string | string[],
    node = `client-${crypto.randomUUID().slice(0, 6)}`,
    ttl = this.ttl,
  ) {
    const s = await createSystem({
      actors: [],
      journal: this.journal,
      mesh: natsMesh({ servers, prefix: this.prefix, leaseTtl: ttl }),
      node,
      logger: "error",
    });
    this.systems.push(s);
    return s;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.systems.map((s) => s.close()));
    await Promise.allSettled([...this.procs.values()].map((p) => p.stop()));
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Ids of the bank nodes (not clients) `s` sees. */
function bankNodes(s: System): string[] {
  return s.directory.nodes().filter((n) => n.types.includes("account")).map((n) => n.id);
}

/** Deposits with one idempotency key, retrying that key until acknowledged or `until`. */
async function depositOnce(
  s: System,
  account: string,
  amount: number,
  key: string,
  until: number,
  errors: string[],
  timeout = 2000,
): Promise<void> {
  for (;;) {
    try {
      await s.ref(Account, account).ask("deposit", { amount, ref: key }, {
        idempotencyKey: key,
        timeout,
      });
      return;
    } catch (err) {
      errors.push(code(err));
      if (performance.now() > until) {
        throw new Error(`Deposit ${key} to ${account} never acknowledged: ${String(err)}`);
      }
      await delay(20);
    }
  }
}

interface Log {
  seqs: number[];
  refs: string[];
  sum: number;
}

async function readLog(s: System, account: string): Promise<Log> {
  const log: Log = { seqs: [], refs: [], sum: 0 };
  for await (const e of s.history(Account, account)) {
    const p = e.payload as { amount: number; ref?: string };
    log.seqs.push(e.seq);
    log.refs.push(p.ref ?? "");
    log.sum += p.amount;
  }
  return log;
}

/** Checks a log against the acknowledged deposits: contiguous, each key exactly once. */
function checkLog(account: string, log: Log, acked: Map<string, number>): void {
  assert.deepEqual(log.seqs, log.seqs.map((_, i) => i + 1), `${account}: seqs are 1..n`);
  assert.equal(new Set(log.refs).size, log.refs.length, `${account}: no key applied twice`);
  assert.deepEqual(
    [...log.refs].sort(),
    [...acked.keys()].sort(),
    `${account}: exactly the acknowledged deposits`,
  );
  const sum = [...acked.values()].reduce((a, b) => a + b, 0);
  assert.equal(log.sum, sum, `${account}: sum of deposits = sum of acknowledged`);
}

/** Parses the `APPEND {json}` trace lines of a node. */
function appends(p: NodeProcess, actor: string) {
  return p.lines()
    .filter((l) => l.startsWith("APPEND "))
    .map((l) =>
      JSON.parse(l.slice(7)) as {
        node: string;
        actor: string;
        epoch: number;
        first: number;
        n: number;
      }
    )
    .filter((a) => a.actor === actor);
}

Deno.test("failover across processes on a 3-server NATS cluster", async (t) => {
  const started = performance.now();
  await using cluster = await startNatsCluster({ servers: 3 });

  await t.step("0. routing, spread and an activation race across processes", async () => {
    const sc = new Scene(cluster);
    try {
      const procs = await Promise.all(
        [0, 1, 2].map((i) => sc.node(`r${i}`, i, { TROUPE_TRACE: "1" })),
      );
      // three clients, each on its own server, race to activate the same fresh accounts
      const clients = await Promise.all([0, 1, 2].map((i) => sc.client(cluster.urls[i]!)));
      for (const c of clients) await waitFor(() => bankNodes(c).length === 3, 5000, "3 nodes");
      const accounts = Array.from({ length: 24 }, (_, i) => `race-${i}`);
      await Promise.all(
        clients.flatMap((c, ci) =>
          accounts.map((a) =>
            c.ref(Account, a).ask("deposit", { amount: 1, ref: `c${ci}` }, { timeout: 10_000 })
          )
        ),
      );
      const hosts = new Map<string, number>();
      for (const a of accounts) {
        assert.equal(await clients[0]!.ref(Account, a).ask("balance"), 3, `${a} got every deposit`);
        const host = await clients[1]!.directory.locate(Account, a);
        assert.ok(host && sc.procs.has(host), `${a} is hosted by a node process (${host})`);
        hosts.set(host, (hosts.get(host) ?? 0) + 1);
      }
      console.log(`[0] spread of 24 accounts: ${JSON.stringify(Object.fromEntries(hosts))}`);
      assert.equal(hosts.size, 3, "every node hosts some accounts");
      // one activation each: every write of an account was made in its first journal epoch
      const epochs = new Map<string, Set<number>>();
      for (const p of procs) {
        for (const line of p.lines()) {
          if (!line.startsWith("APPEND ")) continue;
          const w = JSON.parse(line.slice(7)) as { actor: string; epoch: number };
          if (!epochs.has(w.actor)) epochs.set(w.actor, new Set());
          epochs.get(w.actor)!.add(w.epoch);
        }
      }
      for (const a of accounts) {
        assert.deepEqual([...(epochs.get(`account/${a}`) ?? [])], [1], `${a} activated once`);
      }
    } finally {
      await sc.close();
    }
  });

  await t.step("a. kill -9 of a node under load: no acknowledged event lost", async () => {
    const sc = new Scene(cluster);
    try {
      const client = await sc.client(cluster.urls[0]!);
      await Promise.all([0, 1, 2].map((i) => sc.node(`a${i}`, i)));
      await waitFor(() => bankNodes(client).length === 3, 5000, "3 nodes");
      const accounts = Array.from({ length: 20 }, (_, i) => `acct-${i}`);
      const acked = new Map(accounts.map((a) => [a, new Map<string, number>()]));
      const errors: string[] = [];
      // Activate every account first.
      await Promise.all(accounts.map(async (a) => {
        await depositOnce(client, a, 1, `${a}-open`, performance.now() + 10_000, errors);
        acked.get(a)!.set(`${a}-open`, 1);
      }));
      const victim = "acct-7";
      const host = await client.directory.locate(Account, victim);
      assert.ok(host && sc.procs.has(host), `host of ${victim}: ${host}`);
      const hostProc = sc.procs.get(host)!;
      // Clients on the other servers, which have routed to the victim before the kill.
      const others = await Promise.all([1, 2].map((i) => sc.client(cluster.urls[i]!)));
      for (const c of others) {
        await waitFor(() => bankNodes(c).length === 3, 5000, "3 nodes");
        await c.ref(Account, victim).ask("balance", undefined, { timeout: 5000 });
      }

      let stop = false;
      const windowErrors: string[] = [];
      const tasks = Array.from({ length: 6 }, (_, w) =>
        (async () => {
          for (let i = 0; !stop; i++) {
            const account = accounts[(w * 7 + i) % accounts.length]!;
            const key = `w${w}-${i}`;
            const amount = 1 + ((w * 31 + i * 17) % 100);
            await depositOnce(
              client,
              account,
              amount,
              key,
              performance.now() + 20_000,
              windowErrors,
            );
            acked.get(account)!.set(key, amount);
          }
        })());
      await delay(1000);
      const before = [...acked.values()].reduce((n, m) => n + m.size, 0);
      const killedAt = performance.now();
      hostProc.kill("SIGKILL");
      await hostProc.exited;
      // Probe the victim until another node serves it, from a client on every server (each
      // caller must leave the dead node by itself).
      const probes = [client, ...others];
      const probeErrors: string[] = [];
      const servedAts = await Promise.all(probes.map(async (c) => {
        while (performance.now() - killedAt < TTL + 10_000) {
          try {
            await c.ref(Account, victim).ask("balance", undefined, { timeout: 1000 });
            return performance.now();
          } catch (err) {
            windowErrors.push(code(err));
            probeErrors.push((err as Error).message);
          }
        }
        return 0;
      }));
      // A plain ask during the failover waits for the take-over (within its timeout): it is
      // never bounced between a survivor that still names the dead owner and that owner.
      assert.deepEqual(probeErrors.filter((m) => /moved \d+ times/.test(m)), []);
      const servedAt = Math.max(...servedAts);
      const recovery = servedAt - killedAt;
      const newHost = await client.directory.locate(Account, victim);
      await delay(1500);
      stop = true;
      await Promise.all(tasks);
      const total = [...acked.values()].reduce((n, m) => n + m.size, 0);
      console.log(
        `[a] kill -9 of ${host} (hosting ${victim}): served again by ${newHost} to all ${probes.length} clients after ${
          recovery.toFixed(0)
        } ms (leaseTtl ${TTL}, margin ${MARGIN}); ${total} deposits acknowledged (${before} before the kill); errors seen: ${
          JSON.stringify(count(windowErrors))
        }`,
      );
      assert.ok(servedAts.every((t) => t > 0), `${victim} was not served again to every client`);
      assert.notEqual(newHost, host);
      assert.ok(recovery < TTL + 2000, `recovery took ${recovery.toFixed(0)} ms`);
      for (const e of [...errors, ...windowErrors]) {
        assert.ok(e === "unavailable" || e === "timeout", `unexpected error ${e}`);
      }
      for (const a of accounts) checkLog(a, await readLog(client, a), acked.get(a)!);
    } finally {
      await sc.close();
    }
  });

  await t.step("b. SIGSTOP past the lease: the journal fence holds", async () => {
    const sc = new Scene(cluster);
    try {
      const client = await sc.client(cluster.urls[0]!);
      const trace = { TROUPE_TRACE: "1" };
      await Promise.all([0, 1, 2].map((i) => sc.node(`b${i}`, i, trace)));
      await waitFor(() => bankNodes(client).length === 3, 5000, "3 nodes");
      const x = "paused-x";
      const acked = new Map<string, number>();
      const errors: string[] = [];
      const deposit = async (key: string, amount: number, until: number) => {
        await depositOnce(client, x, amount, key, until, errors);
        acked.set(key, amount);
      };
      for (let i = 0; i < 5; i++) await deposit(`pre-${i}`, 10, performance.now() + 10_000);
      const host = (await client.directory.locate(Account, x))!;
      const h = sc.procs.get(host)!;
      assert.ok(h, `host ${host}`);
      h.kill("SIGSTOP");
      const stoppedAt = performance.now();
      await delay(TTL + MARGIN + 500);
      const t0 = performance.now();
      let takeover: number | undefined;
      let takeoverError: unknown;
      try {
        await deposit("during", 100, performance.now() + 10_000);
        takeover = performance.now() - t0;
      } catch (err) {
        takeoverError = err;
      }
      const takenBy = await client.directory.locate(Account, x);
      console.log(
        `[b] ${host} SIGSTOPped; deposit sent ${(t0 - stoppedAt).toFixed(0)} ms later ${
          takeover !== undefined
            ? `acknowledged after ${takeover.toFixed(0)} ms`
            : `NOT acknowledged (${String(takeoverError)})`
        }; ${x} now on ${takenBy}; errors: ${JSON.stringify(count(errors))}`,
      );
      h.kill("SIGCONT");
      const contAt = performance.now();
      const linesAtCont = h.lines().length;
      // Right after the resume, more deposits (some may reach H's stale subscription).
      const postErrors: string[] = [];
      await Promise.all(Array.from({ length: 10 }, async (_, i) => {
        await depositOnce(client, x, 1, `post-${i}`, performance.now() + 15_000, postErrors);
        acked.set(`post-${i}`, 1);
      }));
      const postTime = performance.now() - contAt;
      await delay(1000);
      const hAfter = h.lines().slice(linesAtCont);
      const hAppends = hAfter.filter((l) => l.startsWith("APPEND ") && l.includes(x));
      const hRefused = hAfter.filter((l) => l.startsWith("APPEND_FAILED") && l.includes(x));
      console.log(
        `[b] after SIGCONT: 10 deposits acknowledged in ${postTime.toFixed(0)} ms (errors: ${
          JSON.stringify(count(postErrors))
        }); ${host} wrote ${hAppends.length} and was refused ${hRefused.length} appends to ${x}; alive: ${!h
          .hasExited}`,
      );
      const log = await readLog(client, x);
      checkLog(x, log, acked);
      // Along the log, the writers' epochs never go back (no stale writer wrote in between),
      // and the successful appends of all nodes tile 1..n exactly.
      const all = [...sc.procs.values()].flatMap((p) => appends(p, `account/${x}`))
        .sort((a, b) => a.first - b.first);
      let next = 1;
      let epoch = 0;
      for (const a of all) {
        assert.equal(a.first, next, `appends tile the log: ${JSON.stringify(all)}`);
        assert.ok(a.epoch >= epoch, `epochs never go back: ${JSON.stringify(all)}`);
        next = a.first + a.n;
        epoch = a.epoch;
      }
      assert.equal(next - 1, log.seqs.length);
      console.log(
        `[b] writers along the log: ${
          all.map((a) => `${a.node}@e${a.epoch}:${a.first}+${a.n}`).join(" ")
        }`,
      );
      // H is still alive and serves again.
      assert.equal(h.hasExited, false, `${host} exited`);
      await waitFor(() => bankNodes(client).includes(host), TTL * 3, `${host} to re-join`);
      const other = "after-resume";
      let servedByH = false;
      for (let i = 0; i < 40 && !servedByH; i++) {
        const id = `${other}-${i}`;
        await client.ref(Account, id).ask("deposit", { amount: 1 }, { timeout: 5000 });
        servedByH = (await client.directory.locate(Account, id)) === host;
      }
      console.log(`[b] ${host} re-joined the directory; hosts new actors again: ${servedByH}`);
      assert.ok(servedByH, `${host} never hosted a new actor after resuming`);
      // Another node took the actor over while H was paused, and H wrote nothing after it
      // was resumed.
      assert.equal(takeover !== undefined, true, `take-over failed: ${String(takeoverError)}`);
      assert.deepEqual(hAppends, [], `${host} wrote after it was resumed`);
    } finally {
      await sc.close();
    }
  });

  await t.step("d. lease taken over after its holder is killed", async () => {
    const sc = new Scene(cluster);
    try {
      const client = await sc.client(cluster.urls[1]!);
      const holder = await sc.node("d0", 0, { TROUPE_LEASE: "L" });
      const line = await holder.waitForLine(/^LEASE /, 10_000, { past: true });
      const first = JSON.parse(line.slice(6)).token as number;
      holder.kill("SIGKILL");
      const killedAt = performance.now();
      await holder.exited;
      const lease = await client.lease("L", { ttl: TTL, timeout: TTL + MARGIN + 5000 });
      const took = performance.now() - killedAt;
      console.log(
        `[d] lease "L" (ttl ${TTL}) taken over ${
          took.toFixed(0)
        } ms after kill -9 of its holder; token ${first} → ${lease.token}`,
      );
      try {
        assert.ok(lease.token > first, `token ${lease.token} > ${first}`);
        assert.ok(took < TTL + MARGIN + 1000, `took ${took.toFixed(0)} ms`);
      } finally {
        await lease.release();
      }
    } finally {
      await sc.close();
    }
  });

  await t.step("e. a WebSocket client with TCP nodes", async () => {
    const sc = new Scene(cluster);
    try {
      await Promise.all([0, 1].map((i) => sc.node(`e${i}`, i)));
      const ws = await sc.client(cluster.wsUrls[2]!);
      const tcp = await sc.client(cluster.urls[0]!);
      await waitFor(() => bankNodes(ws).length === 2, 5000, "2 nodes over WebSocket");
      const t0 = performance.now();
      for (let i = 0; i < 10; i++) {
        assert.equal(await ws.ref(Account, `ws-${i}`).ask("deposit", { amount: 5 }), 5);
      }
      const askMs = (performance.now() - t0) / 10;
      assert.equal(await ws.ref(Account, "ws-0").ask("balance"), 5);
      const got: unknown[] = [];
      const sub = ws.subscribe("news.*", (p, topic) => void got.push([topic, p]));
      const got2: unknown[] = [];
      const sub2 = tcp.subscribe("news.>", (p) => void got2.push(p));
      await delay(200);
      await tcp.publish("news.tcp", { from: "tcp" });
      await ws.publish("news.ws", { from: "ws" });
      await waitFor(() => got.length === 2 && got2.length === 2, 3000, "published messages");
      sub.unsubscribe();
      sub2.unsubscribe();
      assert.deepEqual(got.sort(), [["news.tcp", { from: "tcp" }], ["news.ws", { from: "ws" }]]);
      console.log(`[e] WebSocket client: ask ${askMs.toFixed(1)} ms each (with activation)`);
    } finally {
      await sc.close();
    }
  });

  await t.step(
    "g. a stateless worker's message is resent to another node when its node dies",
    async () => {
      const sc = new Scene(cluster);
      try {
        const nodes = await Promise.all([0, 1, 2].map((i) => sc.node(`g${i}`, i)));
        const client = await sc.client(cluster.urls[0]!);
        await waitFor(() => bankNodes(client).length === 3, 5000, "3 nodes");
        const worker = client.ref(Slowpoke);
        const busy = async () => {
          const before = new Map(nodes.map((n) => [n, n.lines().length]));
          return await new Promise<NodeProcess>((resolve, reject) => {
            const t0 = performance.now();
            const poll = setInterval(() => {
              const n = nodes.find((p) =>
                p.lines().slice(before.get(p)).some((l) => l.startsWith("WORK "))
              );
              if (n) {
                clearInterval(poll);
                resolve(n);
              } else if (performance.now() - t0 > 5000) {
                clearInterval(poll);
                reject(new Error("no node started the work"));
              }
            }, 5);
          });
        };
        // with an idempotency key: resent to another node, answered from there
        const safe = worker.ask("work", 1500, { idempotencyKey: "g-safe", timeout: 15_000 });
        const first = await busy();
        const killedAt = performance.now();
        first.kill("SIGKILL");
        const doneOn = await safe;
        const took = performance.now() - killedAt;
        console.log(
          `[g] worker resent from ${first.info.node} to ${doneOn} in ${took.toFixed(0)} ms`,
        );
        assert.notEqual(doneOn, first.info.node);
        assert.ok(took < TTL + MARGIN + 1500 + 2000, `took ${took.toFixed(0)} ms`);
        // without one: the caller is told, not retried behind its back
        const live = nodes.filter((n) => n !== first);
        const plain = worker.ask("work", 1500, { timeout: 15_000 }).then(
          () => "ok",
          (err) => code(err),
        );
        const second = await busy();
        second.kill("SIGKILL");
        assert.equal(await plain, "unavailable");
        assert.ok(live.includes(second));
      } finally {
        await sc.close();
      }
    },
  );

  await t.step("f. directory lag: join, graceful leave, crash", async () => {
    const sc = new Scene(cluster);
    try {
      const client = await sc.client(cluster.urls[0]!);
      await Promise.all([0, 1, 2].map((i) => sc.node(`f${i}`, i)));
      await waitFor(() => bankNodes(client).length === 3, 5000, "3 nodes");
      const joining = sc.node("f3", 1);
      // READY is printed after createSystem resolved; measure from the moment we see it.
      const p = await joining;
      const ready = performance.now();
      await waitFor(() => bankNodes(client).includes("f3"), 1000, "f3 to join");
      const joinLag = performance.now() - ready;
      const stopAt = performance.now();
      await p.stop();
      const exitMs = performance.now() - stopAt;
      assert.equal((await p.exited).code, 0, "graceful exit code");
      await waitFor(() => !bankNodes(client).includes("f3"), 1000, "f3 to leave");
      const leaveLag = performance.now() - stopAt;
      const victim = sc.procs.get("f2")!;
      victim.kill("SIGKILL");
      const killedAt = performance.now();
      await victim.exited;
      await waitFor(
        () => !bankNodes(client).includes("f2"),
        TTL + MARGIN + 500,
        "f2 to be seen dead",
      );
      const deathLag = performance.now() - killedAt;
      console.log(
        `[f] directory lag: join seen ${joinLag.toFixed(0)} ms after READY; graceful leave seen ${
          leaveLag.toFixed(0)
        } ms after SIGTERM (process exited after ${exitMs.toFixed(0)} ms); kill -9 seen after ${
          deathLag.toFixed(0)
        } ms (ttl ${TTL} + margin ${MARGIN})`,
      );
    } finally {
      await sc.close();
    }
  });

  await t.step("c. the client's NATS server is killed", async () => {
    // A lease must outlast the election of a new leader of the R3 membership stream (a few
    // seconds on nats-server 2.9): with the default-sized lease no node loses its own.
    const sc = new Scene(cluster, C_TTL);
    samples.clear();
    try {
      // The worst case: the client is bound to the server that leads the membership bucket
      // (its R3 stream elects a new leader when that server dies). The nodes are bound to
      // the two other servers.
      const probe = await startNodeProcess({
        script: BANK,
        env: {
          TROUPE_SERVERS: cluster.urls[1]!,
          TROUPE_JOURNAL: sc.journal,
          TROUPE_NODE: "c-probe",
          TROUPE_PREFIX: sc.prefix,
          TROUPE_LEASE_TTL: String(C_TTL),
        },
        readyTimeout: 60_000,
      });
      await probe.stop();
      const leaderName = await streamLeader(cluster, `KV_${sc.prefix}_nodes`);
      const bound = cluster.servers.findIndex((s) => s.name === leaderName);
      assert.ok(bound >= 0, `leader of the nodes bucket: ${leaderName}`);
      const others = [0, 1, 2].filter((i) => i !== bound);
      await Promise.all([0, 1, 2].map((i) => sc.node(`c${i}`, others[i % 2]!)));
      const client = await sc.client(cluster.urls[bound]!);
      await waitFor(() => bankNodes(client).length === 3, 5000, "3 nodes");
      for (let i = 0; i < 6; i++) {
        await client.ref(Account, `c-${i}`).ask("deposit", { amount: 1, ref: `c-${i}-0` });
      }
      await cluster.servers[bound]!.kill("SIGKILL");
      const killedAt = performance.now();
      const errors: string[] = [];
      let firstOk = 0;
      let okCount = 0;
      let maxGap = 0;
      let lastOk = killedAt;
      while (performance.now() - killedAt < 8000) {
        const i = okCount % 6;
        try {
          await depositOnce(
            client,
            `c-${i}`,
            1,
            `c-${i}-k${okCount}`,
            performance.now() + 15_000,
            errors,
            1000,
          );
          const now = performance.now();
          if (!firstOk) firstOk = now - killedAt;
          maxGap = Math.max(maxGap, now - lastOk);
          lastOk = now;
          okCount++;
        } catch (err) {
          errors.push(code(err));
        }
      }
      const nodes = bankNodes(client).sort();
      const fenced = [...sc.procs.values()].flatMap((p) =>
        p.stderr().filter((l) => /lost its lease|fail/i.test(l)).map((l) => l.slice(0, 200))
      );
      console.log(`[c] error samples: ${JSON.stringify(Object.fromEntries(samples))}`);
      console.log(`[c] node warnings: ${JSON.stringify(fenced.slice(0, 10))}`);
      const lockT0 = performance.now();
      const locked = await client.lock("c-lock", (l) => l.token, { ttl: TTL, timeout: 10_000 });
      const lockMs = performance.now() - lockT0;
      console.log(
        `[c] client's server killed: first ask ok after ${firstOk.toFixed(0)} ms, longest gap ${
          maxGap.toFixed(0)
        } ms, ${okCount} asks in 8 s; errors: ${
          JSON.stringify(count(errors))
        }; nodes seen: ${nodes}; lock took ${lockMs.toFixed(0)} ms (token ${locked})`,
      );
      assert.ok(firstOk > 0 && firstOk < 5000, `first ask ok after ${firstOk} ms`);
      assert.ok(maxGap < 5000, `asks stopped succeeding for ${maxGap.toFixed(0)} ms`);
      assert.deepEqual(nodes, ["c0", "c1", "c2"]);
      assert.ok(locked > 0);
      for (const e of errors) assert.ok(e === "unavailable" || e === "timeout", e);
    } finally {
      await sc.close();
      for (const server of cluster.servers) if (!server.running) await server.restart();
    }
  });

  console.log(`[failover] total ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

Deno.test("a paused owner's actors are served by another node within ttl + 2 s", async (t) => {
  // Defect 1 of "The message path as one module": a death seen through another node's
  // clean-up delete of the membership key was reported as a graceful leave, and the router
  // kept sending to the paused process's stale subscription (no answer for minutes).
  await using cluster = await startNatsCluster({ servers: 3 });
  const scenario = async (label: string, clientTtl: number) => {
    const sc = new Scene(cluster);
    try {
      const client = await sc.client(cluster.urls[0]!, undefined, clientTtl);
      await Promise.all([0, 1, 2].map((i) => sc.node(`${label}${i}`, i)));
      await waitFor(() => bankNodes(client).length === 3, 5000, "3 nodes");
      const x = `paused-owner-${label}`;
      const acked = new Map<string, number>();
      const errors: string[] = [];
      await depositOnce(client, x, 1, "open", performance.now() + 10_000, errors);
      acked.set("open", 1);
      const host = (await client.directory.locate(Account, x))!;
      const h = sc.procs.get(host);
      assert.ok(h, `host of ${x}: ${host}`);
      h.kill("SIGSTOP");
      const pausedAt = performance.now();
      // One deposit after another, each with its own idempotency key and a 3 s timeout.
      const sent: { key: string; at: number; took: number; ok: boolean; error?: string }[] = [];
      for (let i = 0; performance.now() - pausedAt < TTL + 2000 + 8000; i++) {
        const key = `d-${i}`;
        const at = performance.now() - pausedAt;
        try {
          await client.ref(Account, x).ask("deposit", { amount: 1, ref: key }, {
            idempotencyKey: key,
            timeout: 3000,
          });
          acked.set(key, 1);
          sent.push({ key, at, took: performance.now() - pausedAt - at, ok: true });
        } catch (err) {
          sent.push({
            key,
            at,
            took: performance.now() - pausedAt - at,
            ok: false,
            error: code(err),
          });
          await delay(50);
        }
      }
      const firstOk = sent.find((s) => s.ok);
      const late = sent.filter((s) => s.at >= TTL + 2000);
      console.log(
        `[paused ${label}] ${host} SIGSTOPped (client leaseTtl ${clientTtl}); ${sent.length} deposits, first answered one sent at ${
          firstOk?.at.toFixed(0)
        } ms and answered after ${firstOk?.took.toFixed(0)} ms; failures: ${
          JSON.stringify(sent.filter((s) => !s.ok).map((s) => `${s.at.toFixed(0)}:${s.error}`))
        }`,
      );
      h.kill("SIGCONT");
      assert.deepEqual(
        late.filter((s) => !s.ok).map((s) => `${s.key} sent at ${s.at.toFixed(0)} ms: ${s.error}`),
        [],
        "every deposit sent ttl + 2 s after the pause is answered",
      );
      assert.ok(late.length >= 3, `only ${late.length} deposits sent after ttl + 2 s`);
      assert.notEqual(await client.directory.locate(Account, x), host);
      // The failed ones again, with their keys: each applied exactly once in the end.
      for (const s of sent.filter((s) => !s.ok)) {
        await depositOnce(client, x, 1, s.key, performance.now() + 15_000, errors);
        acked.set(s.key, 1);
      }
      checkLog(x, await readLog(client, x), acked);
    } finally {
      await sc.close();
    }
  };
  await t.step("client with the nodes' leaseTtl (1.5 s)", () => scenario("p", TTL));
  // The client's own timer calls the death later than the nodes do, so it always learns it
  // through a node's clean-up delete of the key first.
  await t.step("client with a longer leaseTtl (3 s)", () => scenario("q", 2 * TTL));
});

Deno.test("graceful restarts under load: every request in flight is answered, each applied once", async () => {
  // Defect 13 of "The message path as one module": a node stopped with SIGTERM sometimes left
  // a request unanswered (the caller waited for its timeout).
  await using cluster = await startNatsCluster({ servers: 3 });
  const sc = new Scene(cluster);
  try {
    const client = await sc.client(cluster.urls[0]!);
    await Promise.all([0, 1, 2].map((i) => sc.node(`r${i}`, i)));
    await waitFor(() => bankNodes(client).length === 3, 5000, "3 nodes");
    const accounts = Array.from({ length: 12 }, (_, i) => `restart-${i}`);
    const acked = new Map(accounts.map((a) => [a, new Map<string, number>()]));
    const failures: string[] = [];
    let running = true;
    let sent = 0;
    const load = accounts.map(async (x, i) => {
      for (let n = 0; running; n++) {
        const key = `${i}-${n}`;
        sent++;
        try {
          await client.ref(Account, x).ask("deposit", { amount: 1, ref: key }, {
            idempotencyKey: key,
            timeout: 8000,
          });
          acked.get(x)!.set(key, 1);
        } catch (err) {
          failures.push(`${x} ${key}: ${code(err)}`);
          // answered, but not applied for sure: the same key again until it is
          await depositOnce(client, x, 1, key, performance.now() + 20_000, []);
          acked.get(x)!.set(key, 1);
        }
      }
    });
    // restart every node in turn, gracefully, while the load runs
    for (let i = 0; i < 3; i++) {
      await delay(700);
      const id = `r${i}`;
      await sc.procs.get(id)!.stop(10_000);
      await sc.node(id, i);
      await waitFor(() => bankNodes(client).length === 3, 10_000, "3 nodes again");
    }
    await delay(500);
    running = false;
    await Promise.all(load);
    console.log(`[restarts] ${sent} deposits, refusals: ${JSON.stringify(failures)}`);
    assert.deepEqual(
      failures.filter((f) => !f.endsWith(": unavailable")),
      [],
      "every request was answered (no timeout); only unavailable refusals",
    );
    for (const x of accounts) checkLog(x, await readLog(client, x), acked.get(x)!);
  } finally {
    await sc.close();
  }
});

Deno.test("a paused owner that resumes applies nothing it had queued after its callers were told unavailable", async () => {
  // Defect 8: a fenced node re-routed its queued messages to the new owner, so an ask whose
  // caller had already been told `unavailable` was applied later.
  await using cluster = await startNatsCluster({ servers: 3 });
  const sc = new Scene(cluster);
  try {
    const client = await sc.client(cluster.urls[0]!);
    await Promise.all([0, 1, 2].map((i) => sc.node(`s${i}`, i)));
    await waitFor(() => bankNodes(client).length === 3, 5000, "3 nodes");
    const x = "fenced-queue";
    await depositOnce(client, x, 1, "open", performance.now() + 10_000, []);
    const host = (await client.directory.locate(Account, x))!;
    const h = sc.procs.get(host)!;
    // a burst of plain asks (no idempotency key), then the owner is paused mid-burst
    const refused = new Map<string, number>(); // ref -> wall-clock time the caller was told
    const burst = Array.from(
      { length: 300 },
      (_, i) =>
        client.ref(Account, x).ask("deposit", { amount: 1, ref: `b${i}` }, { timeout: 15_000 })
          .then(() => "ok", (err) => {
            const c = code(err);
            if (c === "unavailable") refused.set(`b${i}`, Date.now());
            return c;
          }),
    );
    await delay(15);
    h.kill("SIGSTOP");
    await delay(TTL + MARGIN + 2500); // taken over meanwhile; waiting callers were told
    h.kill("SIGCONT");
    const outcomes = await Promise.all(burst);
    await delay(1500); // the resumed node had time to forward its queue, if it would
    const applied = new Map<string, number>();
    for await (const e of client.history(Account, x)) {
      const ref = (e.payload as { ref?: string }).ref;
      if (ref) applied.set(ref, e.at.getTime());
    }
    const late = [...refused].filter(([ref, at]) => (applied.get(ref) ?? 0) > at);
    console.log(
      `[fenced queue] ${
        JSON.stringify(count(outcomes))
      }; ${refused.size} told unavailable; ${late.length} of those applied later`,
    );
    assert.ok(refused.size > 0, "some callers were told unavailable (the scenario happened)");
    assert.deepEqual(late.map(([ref]) => ref), [], "nothing applied after its caller was told");
  } finally {
    await sc.close();
  }
});

/** The server name of the leader of JetStream stream `name`, from the monitoring port. */
async function streamLeader(cluster: NatsCluster, name: string): Promise<string | undefined> {
  for (const server of cluster.servers) {
    const res = await fetch(`${server.monitorUrl}/jsz?streams=true`);
    const body = await res.json() as {
      account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[];
    };
    for (const account of body.account_details ?? []) {
      for (const st of account.stream_detail ?? []) {
        if (st.name === name && st.cluster?.leader) return st.cluster.leader;
      }
    }
  }
  return undefined;
}

function count(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}
