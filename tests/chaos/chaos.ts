/**
 * The chaos run shared by `tests/chaos/chaos_test.ts` (a few cycles) and `bench/chaos.ts` (the
 * long form): a 3-server NATS cluster (R3 buckets), three node processes
 * (tests/nodes/chaos_node.ts) on one shared libSQL file, and this process as a client sending
 * a steady load: deposits with idempotency keys (retried with the same key until
 * acknowledged), plain asks, tells, and reads / writes / compare-and-sets of registers.
 * Meanwhile faults are injected in cycles, chosen by a seeded PRNG: `kill -9` of a node
 * (restarted), `SIGSTOP` past the lease then `SIGCONT`, `kill -9` of a NATS server (restarted)
 * and a graceful restart of a node.
 *
 * After the run everything is healed, the logs are read back from the journal and checked:
 * every acknowledged deposit is in its log exactly once (lost, duplicated), nothing is in a
 * log that was never sent (phantom), each log's `seq` runs 1..n, along each log the writers'
 * journal epochs never go back and two successful appends never cover one seq (fork, from the
 * nodes' `APPEND` trace), balances equal the sum of the log, register values are unique in
 * their logs and every acknowledged write is there, and the register operations are
 * linearizable per key (see ./linearizability.ts).
 *
 * @module
 */
import { ActorError, createSystem, type System } from "../../mod.ts";
import { natsMesh } from "../../adapters/nats/mod.ts";
import {
  type NatsCluster,
  type NodeProcess,
  startNatsCluster,
  startNodeProcess,
} from "../../adapters/testing/mod.ts";
import { Account } from "../../examples/bank/actors.ts";
import { Register, type RegisterReply } from "../nodes/register.ts";
import { checkRegister, type HistoryOp, type RegisterOp } from "./linearizability.ts";
import {
  type AppendTrace,
  checkAccountLog,
  checkWriters,
  type LogEntry,
  type Sent,
} from "./checks.ts";
import { logViolations } from "../_sqlite.ts";

const NODE_SCRIPT = new URL("../nodes/chaos_node.ts", import.meta.url);

/** The kinds of fault a cycle injects. */
export const FAULT_KINDS = [
  "kill9-node",
  "sigstop-node",
  "kill9-nats",
  "graceful-restart",
] as const;
/** One kind of fault. */
export type FaultKind = typeof FAULT_KINDS[number];

/** Options of {@link runChaos}. */
export interface ChaosOptions {
  /** Fault cycles. */
  cycles: number;
  /** Seed of the fault schedule (and of the load's choices). */
  seed: number;
  /** The kinds of fault to choose from. @default {FAULT_KINDS} */
  kinds?: readonly FaultKind[];
  /** Accounts the deposits go to. @default {300} */
  accounts?: number;
  /** Register keys. @default {150} */
  registers?: number;
  /** The nodes' (and the client's) lease TTL, ms. @default {2000} */
  leaseTtl?: number;
  /** Timeout of each ask and tell, ms. @default {3000} */
  timeout?: number;
  /** Concurrent workers: idempotent deposits, plain asks, tells, register ops. */
  workers?: { deposits?: number; plain?: number; tells?: number; registers?: number };
  /** Pause of each worker between two operations, ms. @default {5} */
  pace?: number;
  /** Where progress lines go. @default {console.log} */
  log?: (line: string) => void;
}

/** One injected fault. */
export interface Fault {
  cycle: number;
  kind: FaultKind;
  /** The node id or NATS server name. */
  target: string;
  /** When it started (`performance.now()`). */
  at: number;
  /** How long the target was down / stopped, ms. */
  downMs: number;
  /** From `at` until the client saw three nodes again, ms. */
  recoveredMs: number;
}

/** What {@link runChaos} found. Every list of violations must be empty. */
export interface ChaosReport {
  seed: number;
  cycles: number;
  durationMs: number;
  faults: Fault[];
  ops: {
    total: number;
    deposits: { sent: number; acked: number; attempts: number };
    plain: { sent: number; acked: number; unknown: number };
    tells: { sent: number; accepted: number; applied: number };
    registers: {
      ops: number;
      known: number;
      unknown: number;
      keys: number;
      maxPerKey: number;
      /** Operations that overlapped another on the same key. */
      concurrent: number;
    };
  };
  /** Error codes the client saw, with counts. */
  errors: Record<string, number>;
  /** The first errors of each fault window: fault, ms since it started, operation, code. */
  errorSamples: string[];
  /** "<operation> <code>" per fault kind (seen between a fault and the next), with counts. */
  errorsByFault: Partial<Record<FaultKind, Record<string, number>>>;
  /** Acknowledged deposits (idempotent or plain) missing from their log. */
  lost: string[];
  /** Deposits or tells in a log more than once, register values written twice. */
  duplicated: string[];
  /** Log entries nobody sent. */
  phantom: string[];
  /** Logs whose seqs are not 1..n. */
  seqGaps: string[];
  /**
   * Read from the database file: a log whose chain runs through another actor's event, or
   * events in no log (see `logViolations` in tests/_sqlite.ts).
   */
  logs: string[];
  /** A stale writer wrote after a newer epoch, or two appends covered one seq. */
  forks: string[];
  /** Balances that differ from the sum of their log. */
  balances: string[];
  /** Acknowledged register writes missing from the log. */
  registerLost: string[];
  /** Register keys whose history is not linearizable (with the history). */
  linearizability: string[];
  /** Register keys the search gave up on. */
  undecided: string[];
  /** Deposits still unacknowledged after the heal (liveness, not safety). */
  unacknowledged: string[];
  /** Unexpected events: node processes that exited on their own, nodes not back in time. */
  anomalies: string[];
  /** Per fault kind: the longest a deposit waited (first attempt → acknowledgement), ms. */
  unavailability: Partial<Record<FaultKind, number>>;
  /** Appends the fence refused (stale epoch), from the nodes' trace. */
  fencedAppends: number;
  /** Accepted tells never applied, with the fault before them and ms since it. */
  tellsLost: string[];
  /** What the nodes wrote to stderr (warnings), the first 200 characters of each line. */
  nodeWarnings: string[];
  /** Longest linearizability search, steps. */
  maxSearchSteps: number;
}

/** A small seeded PRNG (mulberry32): the same seed gives the same fault schedule. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function codeOf(err: unknown): string {
  return err instanceof ActorError ? err.code : `non-ActorError ${String(err).slice(0, 80)}`;
}

interface Deposit {
  account: string;
  key: string;
  amount: number;
  first: number;
  ackedAt: number | undefined;
  attempts: number;
}

interface Plain {
  account: string;
  ref: string;
  amount: number;
  ok: boolean | undefined;
}

interface Tell {
  account: string;
  ref: string;
  amount: number;
  accepted: boolean;
  at: number;
  applied: boolean;
}

/** The processes and the client of one run. */
class Scene {
  readonly prefix = `c${crypto.randomUUID().slice(0, 8)}`;
  readonly dir = Deno.makeTempDirSync({ prefix: "troupe-chaos-" });
  readonly journal = `file:${this.dir}/chaos.db`;
  /** The current process of each node id. */
  readonly procs = new Map<string, NodeProcess>();
  /** Every process ever started (their traces are read at the end). */
  readonly all: NodeProcess[] = [];
  /** Processes expected to exit (killed or stopped by the run). */
  readonly expectedExit = new Set<NodeProcess>();
  readonly anomalies: string[] = [];
  client: System | undefined;

  constructor(readonly cluster: NatsCluster, readonly ttl: number) {}

  async node(id: string): Promise<NodeProcess> {
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const p = await startNodeProcess({
          script: NODE_SCRIPT,
          env: {
            TROUPE_SERVERS: this.cluster.urls.join(","),
            TROUPE_JOURNAL: this.journal,
            TROUPE_NODE: id,
            TROUPE_PREFIX: this.prefix,
            TROUPE_LEASE_TTL: String(this.ttl),
            TROUPE_TRACE: "1",
          },
          readyTimeout: 60_000,
          maxLines: 2_000_000,
        });
        this.procs.set(id, p);
        this.all.push(p);
        p.exited.then((status) => {
          if (!this.expectedExit.has(p)) {
            this.anomalies.push(
              `node ${id} (pid ${p.pid}) exited on its own: code ${status.code} ${
                status.signal ?? ""
              }; stderr: ${p.stderr().slice(-5).join(" | ")}`,
            );
          }
        });
        return p;
      } catch (err) {
        last = err;
        this.anomalies.push(`node ${id} failed to start (attempt ${attempt + 1}): ${err}`);
      }
    }
    throw last;
  }

  async startClient(): Promise<System> {
    this.client = await createSystem({
      actors: [],
      journal: this.journal,
      mesh: natsMesh({ servers: this.cluster.urls, prefix: this.prefix, leaseTtl: this.ttl }),
      node: `chaos-client-${this.prefix}`,
      logger: "error",
    });
    return this.client;
  }

  /** Ids of the live nodes hosting accounts, as the client sees them. */
  liveNodes(): string[] {
    const ids = this.client!.directory.nodes().filter((n) => n.types.includes("account")).map((
      n,
    ) => n.id);
    return [...new Set(ids)].sort();
  }

  async close(): Promise<void> {
    for (const p of this.all) this.expectedExit.add(p);
    await this.client?.close().catch(() => {});
    await Promise.allSettled(this.all.map((p) => p.stop(10_000)));
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Runs the chaos scenario and checks its invariants; never throws for a violation (they are
 * in the report), only when the set-up itself fails.
 *
 * @example
 * ```ts
 * const report = await runChaos({ cycles: 5, seed: 42 });
 * console.log(report.lost.length, report.linearizability.length); // 0 0
 * ```
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const ttl = options.leaseTtl ?? 2000;
  const timeout = options.timeout ?? 3000;
  const nAccounts = options.accounts ?? 300;
  const nRegisters = options.registers ?? 150;
  const pace = options.pace ?? 5;
  const workers = {
    deposits: options.workers?.deposits ?? 6,
    plain: options.workers?.plain ?? 1,
    tells: options.workers?.tells ?? 1,
    registers: options.workers?.registers ?? 4,
  };
  const faultRandom = prng(options.seed);
  const loadRandom = prng(options.seed ^ 0x5bd1e995);
  const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const between = (r: () => number, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo));
  const started = performance.now();

  const cluster = await startNatsCluster({ servers: 3, websocket: false });
  const sc = new Scene(cluster, ttl);
  let stop = false;
  let abort = false;
  let load: Promise<void>[] = [];
  try {
    const nodeIds = ["n0", "n1", "n2"];
    await Promise.all(nodeIds.map((id) => sc.node(id)));
    const client = await sc.startClient();
    await waitUntil(() => sc.liveNodes().length === 3, 20_000, "three nodes");
    log(
      `[chaos] seed ${options.seed}, ${options.cycles} cycles, ${nAccounts} accounts, ${nRegisters} registers, leaseTtl ${ttl} ms, prefix ${sc.prefix}`,
    );

    // ---- load ----
    const accounts = Array.from({ length: nAccounts }, (_, i) => `acct-${i}`);
    const registerKeys = Array.from({ length: nRegisters }, (_, i) => `reg-${i}`);
    const errors: Record<string, number> = {};
    const errorTimes: { at: number; code: string }[] = [];
    const count = (err: unknown, what: string) => {
      const c = codeOf(err);
      errors[c] = (errors[c] ?? 0) + 1;
      errorTimes.push({ at: performance.now(), code: `${what} ${c}` });
    };
    const deposits: Deposit[] = [];
    const plains: Plain[] = [];
    const tells: Tell[] = [];
    const history = new Map<string, HistoryOp[]>(registerKeys.map((k) => [k, []]));
    let nextValue = 1;

    const depositUntil = async (d: Deposit, giveUpAt: number) => {
      while (d.ackedAt === undefined) {
        d.attempts++;
        try {
          await client.ref(Account, d.account).ask("deposit", { amount: d.amount, ref: d.key }, {
            idempotencyKey: d.key,
            timeout,
          });
          d.ackedAt = performance.now();
        } catch (err) {
          count(err, "deposit");
          if (abort || performance.now() > giveUpAt) return;
          await sleep(50);
        }
      }
    };

    const depositWorker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const d: Deposit = {
          account: pick(loadRandom, accounts),
          key: `k${w}-${i}`,
          amount: between(loadRandom, 1, 100),
          first: performance.now(),
          ackedAt: undefined,
          attempts: 0,
        };
        deposits.push(d);
        await depositUntil(d, d.first + 60_000);
        await sleep(pace);
      }
    };
    const plainWorker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const p: Plain = {
          account: pick(loadRandom, accounts),
          ref: `p${w}-${i}`,
          amount: between(loadRandom, 1, 100),
          ok: undefined,
        };
        plains.push(p);
        try {
          await client.ref(Account, p.account).ask("deposit", { amount: p.amount, ref: p.ref }, {
            timeout,
          });
          p.ok = true;
        } catch (err) {
          count(err, "plain");
          await sleep(50);
        }
        await sleep(pace);
      }
    };
    const tellWorker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const t: Tell = {
          account: pick(loadRandom, accounts),
          ref: `t${w}-${i}`,
          amount: between(loadRandom, 1, 100),
          accepted: false,
          at: performance.now(),
          applied: false,
        };
        tells.push(t);
        try {
          await client.ref(Account, t.account).tell("deposit", { amount: t.amount, ref: t.ref }, {
            timeout,
          });
          t.accepted = true;
        } catch (err) {
          count(err, "tell");
          await sleep(50);
        }
        await sleep(pace);
      }
    };
    const lastSeen = new Map<string, number>();
    const registerOp = async (key: string, op: RegisterOp, id: string) => {
      const ref = client.ref(Register, key);
      const h: HistoryOp = {
        id,
        op,
        invokedAt: performance.now(),
        completedAt: 0,
        result: undefined,
      };
      history.get(key)!.push(h);
      try {
        let reply: RegisterReply;
        if (op.kind === "read") reply = await ref.ask("read", undefined, { timeout });
        else if (op.kind === "write") reply = await ref.ask("write", op.value, { timeout });
        else reply = await ref.ask("cas", { expected: op.expected, next: op.next }, { timeout });
        h.result = { ok: reply.ok, value: reply.value };
        lastSeen.set(key, reply.value);
      } catch (err) {
        count(err, "register");
      }
      h.completedAt = performance.now();
      return h;
    };
    const registerWorker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        // half the ops go to 3 hot keys (a new three every 10 s), so that operations on one
        // key overlap; the others spread over every key
        const hot = Math.floor((performance.now() - started) / 10_000) * 3;
        const key = loadRandom() < 0.5
          ? registerKeys[(hot + between(loadRandom, 0, 3)) % nRegisters]!
          : pick(loadRandom, registerKeys);
        const r = loadRandom();
        const op: RegisterOp = r < 0.4
          ? { kind: "read" }
          : r < 0.7
          ? { kind: "write", value: nextValue++ }
          : { kind: "cas", expected: lastSeen.get(key) ?? 0, next: nextValue++ };
        const h = await registerOp(key, op, `r${w}-${i}`);
        if (h.result === undefined) await sleep(50);
        await sleep(pace);
      }
    };
    load = [
      ...Array.from({ length: workers.deposits }, (_, w) => depositWorker(w)),
      ...Array.from({ length: workers.plain }, (_, w) => plainWorker(w)),
      ...Array.from({ length: workers.tells }, (_, w) => tellWorker(w)),
      ...Array.from({ length: workers.registers }, (_, w) => registerWorker(w)),
    ];

    // ---- faults ----
    const faults: Fault[] = [];
    const margin = Math.min(1000, Math.max(250, ttl / 5));
    await sleep(2000);
    for (let cycle = 1; cycle <= options.cycles; cycle++) {
      const kind = pick(faultRandom, options.kinds ?? FAULT_KINDS);
      const at = performance.now();
      let target: string;
      let downMs = 0;
      if (kind === "kill9-nats") {
        const i = between(faultRandom, 0, 3);
        const server = cluster.servers[i]!;
        target = server.name;
        const down = between(faultRandom, 500, 3000);
        await server.kill("SIGKILL");
        await sleep(down);
        await server.restart();
        downMs = performance.now() - at;
      } else {
        target = pick(faultRandom, nodeIds);
        const p = sc.procs.get(target)!;
        if (kind === "sigstop-node") {
          const extra = between(faultRandom, 300, 2000);
          p.kill("SIGSTOP");
          await sleep(ttl + margin + extra);
          p.kill("SIGCONT");
          downMs = performance.now() - at;
        } else {
          sc.expectedExit.add(p);
          const down = between(faultRandom, 200, 1500);
          if (kind === "kill9-node") {
            p.kill("SIGKILL");
            await p.exited;
          } else {
            await p.stop(10_000);
            const status = await p.exited;
            if (status.code !== 0) {
              sc.anomalies.push(
                `cycle ${cycle}: graceful stop of ${target} exited with ${status.code} ${
                  status.signal ?? ""
                }`,
              );
            }
          }
          await sleep(down);
          await sc.node(target);
          downMs = performance.now() - at;
        }
      }
      const back = await waitUntil(() => sc.liveNodes().length === 3, 30_000, "three nodes")
        .then(() => true, () => false);
      const recoveredMs = performance.now() - at;
      if (!back) {
        sc.anomalies.push(
          `cycle ${cycle}: after ${kind} of ${target}, the client saw only ${sc.liveNodes()} after 30 s`,
        );
      }
      faults.push({ cycle, kind, target, at, downMs, recoveredMs });
      log(
        `[chaos] cycle ${cycle}/${options.cycles} at ${
          (at - started).toFixed(0)
        } ms: ${kind} ${target}, down ${downMs.toFixed(0)} ms, three nodes again after ${
          recoveredMs.toFixed(0)
        } ms; ${deposits.length} deposits so far`,
      );
      await sleep(between(faultRandom, 1500, 3000));
    }

    // ---- heal and stop the load ----
    for (const s of cluster.servers) if (!s.running) await s.restart();
    for (const id of nodeIds) {
      const p = sc.procs.get(id)!;
      if (p.hasExited) await sc.node(id);
    }
    await waitUntil(() => sc.liveNodes().length === 3, 30_000, "three nodes").catch(() => {});
    stop = true;
    await Promise.all(load);
    const pending = deposits.filter((d) => d.ackedAt === undefined);
    await Promise.all(pending.map((d) => depositUntil(d, performance.now() + 60_000)));
    // A last read of every register, once everything is quiet.
    await Promise.all(registerKeys.map((k) => registerOp(k, { kind: "read" }, `final-${k}`)));
    await sleep(1000); // accepted tells reach their actors

    // ---- read the logs back ----
    const report: ChaosReport = {
      seed: options.seed,
      cycles: options.cycles,
      durationMs: 0,
      faults,
      ops: {
        total: 0,
        deposits: {
          sent: deposits.length,
          acked: deposits.filter((d) => d.ackedAt !== undefined).length,
          attempts: deposits.reduce((n, d) => n + d.attempts, 0),
        },
        plain: {
          sent: plains.length,
          acked: plains.filter((p) => p.ok).length,
          unknown: plains.filter((p) => !p.ok).length,
        },
        tells: { sent: tells.length, accepted: tells.filter((t) => t.accepted).length, applied: 0 },
        registers: { ops: 0, known: 0, unknown: 0, keys: nRegisters, maxPerKey: 0, concurrent: 0 },
      },
      errors,
      errorsByFault: {},
      errorSamples: [],
      lost: [],
      duplicated: [],
      phantom: [],
      seqGaps: [],
      logs: [],
      forks: [],
      balances: [],
      registerLost: [],
      linearizability: [],
      undecided: [],
      unacknowledged: deposits.filter((d) => d.ackedAt === undefined).map((d) =>
        `${d.account} ${d.key}`
      ),
      anomalies: sc.anomalies,
      unavailability: {},
      fencedAppends: 0,
      tellsLost: [],
      nodeWarnings: [],
      maxSearchSteps: 0,
    };
    const sent = new Map<string, Sent>();
    for (const d of deposits) sent.set(d.key, { account: d.account, what: "deposit" });
    for (const p of plains) sent.set(p.ref, { account: p.account, what: "plain" });
    for (const t of tells) sent.set(t.ref, { account: t.account, what: "tell" });
    const tellByRef = new Map(tells.map((t) => [t.ref, t]));
    const mustHave = new Map<string, string[]>(); // account -> refs acknowledged
    for (const d of deposits) {
      if (d.ackedAt !== undefined) push(mustHave, d.account, d.key);
    }
    for (const p of plains) if (p.ok) push(mustHave, p.account, p.ref);
    const seqs = new Map<string, number>(); // actor -> log length
    await pooled(accounts, 8, async (account) => {
      const log: LogEntry[] = [];
      for await (const e of client.history(Account, account)) {
        const p = e.payload as { amount: number; ref?: string };
        log.push({ seq: e.seq, amount: p.amount, ref: p.ref ?? "" });
      }
      seqs.set(`account/${account}`, log.at(-1)?.seq ?? 0);
      const c = checkAccountLog(account, log, sent, mustHave.get(account) ?? []);
      report.seqGaps.push(...c.seqGaps);
      report.duplicated.push(...c.duplicated);
      report.phantom.push(...c.phantom);
      report.lost.push(...c.lost);
      report.ops.tells.applied += c.tellsApplied.length;
      for (const ref of c.tellsApplied) tellByRef.get(ref)!.applied = true;
      const sum = c.sum;
      const balance = await client.ref(Account, account).ask("balance", undefined, {
        timeout: 30_000,
      });
      if (balance !== sum) {
        report.balances.push(`account ${account}: balance ${balance}, sum of log ${sum}`);
      }
    });

    // registers: the log, then linearizability
    await pooled(registerKeys, 8, async (key) => {
      const ops = history.get(key)!;
      const acked = new Set<number>();
      for (const h of ops) {
        if (h.result?.ok && h.op.kind !== "read") acked.add(h.result.value);
      }
      const values = new Map<number, number>();
      let n = 0;
      for await (const e of client.history(Register, key)) {
        n++;
        if (e.seq !== n) {
          report.seqGaps.push(`register ${key}: seq ${e.seq} at position ${n}`);
          n = e.seq;
        }
        const v = (e.payload as { value: number }).value;
        values.set(v, (values.get(v) ?? 0) + 1);
      }
      seqs.set(`register/${key}`, n);
      for (const [v, times] of values) {
        if (times > 1) report.duplicated.push(`register ${key}: value ${v} written ${times} times`);
      }
      for (const v of acked) {
        if (!values.has(v)) report.registerLost.push(`register ${key}: acknowledged ${v} missing`);
      }
    });
    for (const [key, ops] of history) {
      report.ops.registers.ops += ops.length;
      report.ops.registers.known += ops.filter((h) => h.result !== undefined).length;
      report.ops.registers.maxPerKey = Math.max(report.ops.registers.maxPerKey, ops.length);
      const sorted = [...ops].sort((a, b) => a.invokedAt - b.invokedAt);
      let reach = -Infinity;
      let reacher: HistoryOp | undefined;
      const overlapping = new Set<HistoryOp>();
      for (const h of sorted) {
        if (h.invokedAt < reach) overlapping.add(h).add(reacher!);
        if (h.completedAt > reach) [reach, reacher] = [h.completedAt, h];
      }
      report.ops.registers.concurrent += overlapping.size;
      const res = checkRegister(ops);
      report.maxSearchSteps = Math.max(report.maxSearchSteps, res.steps);
      if (res.linearizable === false) {
        report.linearizability.push(`register ${key}: not linearizable: ${describe(ops)}`);
      } else if (res.linearizable === undefined) {
        report.undecided.push(`register ${key}: gave up after ${res.steps} steps`);
      }
    }
    report.ops.registers.unknown = report.ops.registers.ops - report.ops.registers.known;

    // every log of the database file, registers and other actors too
    report.logs.push(...logViolations(sc.journal));

    for (const p of sc.all) {
      for (const line of p.stderr()) {
        report.nodeWarnings.push(`${p.info.node}/${p.pid}: ${line.slice(0, 200)}`);
      }
    }
    // the writers, from the nodes' APPEND trace
    const byActor = new Map<string, AppendTrace[]>();
    for (const p of sc.all) {
      for (const line of p.lines()) {
        if (line.startsWith("APPEND ")) {
          const a = JSON.parse(line.slice(7)) as AppendTrace;
          push(byActor, a.actor, a);
        } else if (line.startsWith("APPEND_FAILED ")) report.fencedAppends++;
      }
    }
    report.forks.push(...checkWriters(byActor, seqs));

    // unavailability: the longest a deposit started in a fault's window waited, counted up
    // to the next fault at most (the quiet time between faults keeps windows apart)
    for (let i = 0; i < faults.length; i++) {
      const f = faults[i]!;
      const end = faults[i + 1]?.at ?? Infinity;
      let worst = 0;
      for (const d of deposits) {
        if (d.first < f.at || d.first >= end) continue;
        worst = Math.max(worst, Math.min(d.ackedAt ?? Infinity, end) - d.first);
      }
      report.unavailability[f.kind] = Math.max(report.unavailability[f.kind] ?? 0, worst);
      const byCode = report.errorsByFault[f.kind] ??= {};
      for (const e of errorTimes) {
        if (e.at < f.at || e.at >= end) continue;
        if ((byCode[e.code] = (byCode[e.code] ?? 0) + 1) <= 3) {
          report.errorSamples.push(
            `cycle ${f.cycle} ${f.kind} ${f.target} (down ${f.downMs.toFixed(0)} ms) +${
              (e.at - f.at).toFixed(0)
            } ms: ${e.code}`,
          );
        }
      }
    }
    // accepted tells never applied (allowed: at most once), by the fault before them
    for (const t of tells) {
      if (!t.accepted || t.applied) continue;
      // a tell sent just before a fault is lost in it
      const f = faults.findLast((f) => f.at <= t.at + 1000);
      const k = f ? `${f.kind} ${f.target} +${(t.at - f.at).toFixed(0)} ms` : "before any fault";
      report.tellsLost.push(
        `${t.ref} to ${t.account} at ${(t.at - started).toFixed(0)} ms: ${k}`,
      );
    }
    report.ops.total = report.ops.deposits.sent + report.ops.plain.sent + report.ops.tells.sent +
      report.ops.registers.ops;
    report.durationMs = performance.now() - started;
    return report;
  } finally {
    stop = abort = true;
    await Promise.allSettled(load);
    await sc.close();
    await cluster.stop();
  }
}

/** The report's lines for people. */
export function summarize(r: ChaosReport): string[] {
  const kinds = new Map<string, number>();
  for (const f of r.faults) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
  const lines = [
    `[chaos] seed ${r.seed}: ${r.cycles} cycles in ${(r.durationMs / 1000).toFixed(1)} s; faults ${
      JSON.stringify(Object.fromEntries(kinds))
    }`,
    `[chaos] operations ${r.ops.total}: deposits ${r.ops.deposits.sent} (acknowledged ${r.ops.deposits.acked}, ${r.ops.deposits.attempts} attempts), plain asks ${r.ops.plain.sent} (acknowledged ${r.ops.plain.acked}, unknown ${r.ops.plain.unknown}), tells ${r.ops.tells.sent} (accepted ${r.ops.tells.accepted}, applied ${r.ops.tells.applied}), register ops ${r.ops.registers.ops} on ${r.ops.registers.keys} keys (overlapping another op on their key ${r.ops.registers.concurrent}, unknown outcome ${r.ops.registers.unknown}, at most ${r.ops.registers.maxPerKey} per key, longest search ${r.maxSearchSteps} steps)`,
    `[chaos] lost ${r.lost.length}, duplicated ${r.duplicated.length}, phantom ${r.phantom.length}, seq gaps ${r.seqGaps.length}, logs off their chain ${r.logs.length}, forks ${r.forks.length}, balance mismatches ${r.balances.length}, register writes lost ${r.registerLost.length}, linearizability violations ${r.linearizability.length} (undecided ${r.undecided.length}); unacknowledged after heal ${r.unacknowledged.length}; appends refused by the fence ${r.fencedAppends}`,
    `[chaos] worst deposit wait per fault kind (ms): ${
      JSON.stringify(
        Object.fromEntries(Object.entries(r.unavailability).map(([k, v]) => [k, Math.round(v)])),
      )
    }; errors seen ${JSON.stringify(r.errors)}, by the fault before them ${
      JSON.stringify(r.errorsByFault)
    }`,
  ];
  const tellKinds = new Map<string, number>();
  for (const t of r.tellsLost) {
    const k = t.split(": ")[1]!.split(" ")[0]!;
    tellKinds.set(k, (tellKinds.get(k) ?? 0) + 1);
  }
  lines.push(
    `[chaos] accepted tells never applied (tells are at most once): ${r.tellsLost.length} ${
      JSON.stringify(Object.fromEntries(tellKinds))
    }`,
  );
  for (const a of r.anomalies) lines.push(`[chaos] anomaly: ${a}`);
  for (
    const v of [
      ...r.lost,
      ...r.duplicated,
      ...r.phantom,
      ...r.seqGaps,
      ...r.logs,
      ...r.forks,
      ...r.balances,
      ...r.registerLost,
      ...r.linearizability,
      ...r.undecided,
      ...r.unacknowledged,
    ].slice(0, 30)
  ) lines.push(`[chaos] VIOLATION ${v}`);
  return lines;
}

/** All safety violations of a report, one line each. */
export function violations(r: ChaosReport): string[] {
  return [
    ...r.lost,
    ...r.duplicated,
    ...r.phantom,
    ...r.seqGaps,
    ...r.logs,
    ...r.forks,
    ...r.balances,
    ...r.registerLost,
    ...r.linearizability,
  ];
}

function describe(ops: HistoryOp[]): string {
  return ops.map((h) => {
    const o = h.op.kind === "read"
      ? "read"
      : h.op.kind === "write"
      ? `write(${h.op.value})`
      : `cas(${h.op.expected}→${h.op.next})`;
    const res = h.result === undefined ? "?" : `${h.result.ok ? "ok" : "fail"}:${h.result.value}`;
    return `${h.id} ${o} [${h.invokedAt.toFixed(0)},${h.completedAt.toFixed(0)}] ${res}`;
  }).join("; ");
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

async function pooled<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (i < items.length) await fn(items[i++]!);
  }));
}

async function waitUntil(cond: () => boolean, timeout: number, what: string): Promise<void> {
  const end = performance.now() + timeout;
  while (!cond()) {
    if (performance.now() > end) {
      throw new Error(`Timed out after ${timeout} ms waiting for ${what}`);
    }
    await sleep(20);
  }
}
