/**
 * Durable pub/sub against raw JetStream, on one nats-server (loopback, file store), in the
 * same run: `system.publish(topic, payload, { durable: true })` vs the JetStream client's
 * `js.publish` of the same encoded payload into a stream configured alike (with and without
 * a `Nats-Msg-Id`; Troupe always sends one), one at a time and 64 in flight; then draining
 * stored messages through a durable subscription vs a raw pull consumer.
 *
 * Rounds alternate raw and Troupe (three each, the median kept) so that background load hits
 * both alike; CPU per message (this process and the nats-server, from `/proc/<pid>/stat`) is
 * reported too, since throughput on a shared machine is noisy.
 *
 * `deno run -A bench/durable.ts`
 *
 * @module
 */
import { createSystem, type System } from "../mod.ts";
import { msgpack } from "../spi.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { connect } from "@nats-io/transport-node";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  type JetStreamClient,
  jetstreamManager,
  StorageType,
} from "@nats-io/jetstream";
import { CpuMeter, loadAverage } from "./_proc.ts";

const PAYLOAD = { order: 4217, sku: "book-978-0", qty: 2, note: "x".repeat(80) };
const BYTES = msgpack.encode(PAYLOAD);
const ROUNDS = 3;

/** One measured phase: messages per second and CPU µs per message (client, server). */
export interface Phase {
  perSecond: number;
  clientCpuUs: number;
  serverCpuUs: number;
}

/** Runs `n` calls of `fn`, `inFlight` at a time; returns the phase's figures. */
async function measure(
  n: number,
  inFlight: number,
  fn: (i: number) => Promise<unknown>,
  serverPid: number,
): Promise<Phase> {
  const meter = new CpuMeter(["self", serverPid]);
  meter.start();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n) await fn(next++);
    }),
  );
  const ms = performance.now() - t0;
  const [client, server] = meter.stop();
  return { perSecond: (n / ms) * 1000, clientCpuUs: client! / n, serverCpuUs: server! / n };
}

function median(phases: Phase[]): Phase {
  const mid = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return {
    perSecond: mid(phases.map((p) => p.perSecond)),
    clientCpuUs: mid(phases.map((p) => p.clientCpuUs)),
    serverCpuUs: mid(phases.map((p) => p.serverCpuUs)),
  };
}

/** Results of {@link benchDurable}. */
export interface DurableBench {
  /** By mode ("1 in flight", "64 in flight"): raw without id, raw with id, Troupe. */
  publish: Record<string, { raw: Phase; rawId: Phase; troupe: Phase }>;
  /** Draining stored messages: raw pull consumer vs durable subscription (32 in flight). */
  consume: { raw: Phase; troupe: Phase };
  load: number[];
}

/** The benchmark; see the module doc. */
export async function benchDurable(
  options: { sequential?: number; concurrent?: number; drain?: number } = {},
): Promise<DurableBench> {
  const nSeq = options.sequential ?? 3_000;
  const nPar = options.concurrent ?? 20_000;
  const nDrain = options.drain ?? 20_000;
  await using nats = await startNatsCluster({ servers: 1, websocket: false });
  const serverPid = nats.servers[0]!.pid!;
  // the raw client as Troupe configures its own: no async stack traces per request
  const nc: NatsConnection = await connect({ servers: nats.urls[0]!, noAsyncTraces: true });
  const jsm = await jetstreamManager(nc);
  // the raw stream: configured like Troupe's (<prefix>_topics)
  await jsm.streams.add({
    name: "raw_topics",
    subjects: ["raw.d.>"],
    storage: StorageType.File,
    max_age: nanos(7 * 24 * 3_600_000),
    duplicate_window: nanos(120_000),
    allow_direct: false,
  });
  const js: JetStreamClient = jetstream(nc);
  const system: System = await createSystem({
    mesh: natsMesh({ servers: nats.urls[0]!, prefix: "bench" }),
    logger: "error",
  });
  const raw = (_i: number) => js.publish("raw.d.orders.created", BYTES);
  const rawId = (_i: number) =>
    js.publish("raw.d.orders.created", BYTES, { msgID: crypto.randomUUID() });
  const troupe = (_i: number) => system.publish("orders.created", PAYLOAD, { durable: true });
  try {
    // warm-up: connections, the stream, JIT
    await measure(500, 16, raw, serverPid);
    await measure(500, 16, rawId, serverPid);
    await measure(500, 16, troupe, serverPid);
    const publish: DurableBench["publish"] = {};
    for (
      const [mode, n, inFlight] of [["1 in flight", nSeq, 1], ["64 in flight", nPar, 64]] as const
    ) {
      const r: Phase[] = [];
      const ri: Phase[] = [];
      const t: Phase[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        r.push(await measure(n, inFlight, raw, serverPid));
        ri.push(await measure(n, inFlight, rawId, serverPid));
        t.push(await measure(n, inFlight, troupe, serverPid));
      }
      publish[mode] = { raw: median(r), rawId: median(ri), troupe: median(t) };
    }
    const consume = await benchConsume(nc, system, nDrain, serverPid);
    return { publish, consume, load: loadAverage() };
  } finally {
    await system.close();
    await nc.close();
  }
}

/**
 * Draining `n` stored messages: a raw durable pull consumer (`consume()`, 32 buffered, an ack
 * per message) vs a durable subscription with `concurrency: 32`, each from a stream holding
 * exactly those messages.
 */
async function benchConsume(
  nc: NatsConnection,
  system: System,
  n: number,
  serverPid: number,
): Promise<{ raw: Phase; troupe: Phase }> {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const raws: Phase[] = [];
  const troupes: Phase[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const subject = `raw.d.drain.${round}`;
    const topic = `drain.${round}`;
    await Promise.all(Array.from({ length: 64 }, async (_, w) => {
      for (let i = w; i < n; i += 64) {
        await js.publish(subject, BYTES);
        await system.publish(topic, PAYLOAD, { durable: true });
      }
    }));
    await jsm.consumers.add("raw_topics", {
      durable_name: `drain${round}`,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: subject,
      max_deliver: -1,
    });
    const consumer = await js.consumers.get("raw_topics", `drain${round}`);
    raws.push(
      await drained(n, serverPid, async (done) => {
        const it = await consumer.consume({ max_messages: 32 });
        let got = 0;
        for await (const m of it) {
          msgpack.decode(m.data);
          m.ack();
          if (++got === n) break;
        }
        await it.close();
        done();
      }),
    );
    troupes.push(
      await drained(n, serverPid, (done) => {
        let got = 0;
        const sub = system.subscribe(topic, () => {
          if (++got === n) done();
        }, { durable: `drain${round}`, from: "all", concurrency: 32 });
        return new Promise<void>((resolve) => {
          const check = setInterval(() => {
            if (got >= n) {
              clearInterval(check);
              sub.unsubscribe();
              resolve();
            }
          }, 5);
        });
      }),
    );
  }
  return { raw: median(raws), troupe: median(troupes) };
}

/** Times `run` until it calls `done` for `n` messages. */
async function drained(
  n: number,
  serverPid: number,
  run: (done: () => void) => Promise<void>,
): Promise<Phase> {
  const meter = new CpuMeter(["self", serverPid]);
  meter.start();
  const t0 = performance.now();
  let end = 0;
  await run(() => end ||= performance.now());
  const ms = (end || performance.now()) - t0;
  const [client, server] = meter.stop();
  return { perSecond: (n / ms) * 1000, clientCpuUs: client! / n, serverCpuUs: server! / n };
}

if (import.meta.main) {
  const f = (x: number) => x >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(1);
  const line = (name: string, p: Phase, base?: Phase) =>
    `   ${name.padEnd(28)} ${f(p.perSecond).padStart(8)}/s  client ${
      f(p.clientCpuUs).padStart(5)
    } µs/msg  server ${f(p.serverCpuUs).padStart(5)} µs/msg${
      base ? `  (${(p.perSecond / base.perSecond).toFixed(2)}× rate)` : ""
    }`;
  console.log(
    `durable pub/sub vs raw JetStream — ${
      new Date().toISOString()
    } — ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, load ${
      loadAverage().join(" ")
    }`,
  );
  const r = await benchDurable();
  for (const [mode, p] of Object.entries(r.publish)) {
    console.log(`publish, ${mode} (${BYTES.byteLength} B payload):`);
    console.log(line("raw js.publish", p.raw));
    console.log(line("raw js.publish + msgID", p.rawId, p.raw));
    console.log(line("system.publish durable", p.troupe, p.rawId));
  }
  console.log("drain of stored messages (32 in flight):");
  console.log(line("raw pull consumer + ack", r.consume.raw));
  console.log(line("durable subscription", r.consume.troupe, r.consume.raw));
  console.log(`load average after: ${r.load.join(" ")}`);
}
