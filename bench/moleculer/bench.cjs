// Moleculer 0.14 against raw NATS request/reply, both from Node.js, in the same run (the
// comparison of the issue "Routing addressed to nodes"). Started by bench/nats.ts with `node`;
// installs nothing: MOLECULER_MODULES names a node_modules folder (a scratch folder outside the
// repository) holding moleculer@0.14 and nats@2.
//
// The responder runs in another process (responder.cjs). The caller sends, 64 in flight:
// - raw: `nc.request()` of nats v2 (`noAsyncTraces: true`), and a hand-made mux (one reply
//   subscription, a map of pending requests), each with the payload encoded once, up front;
// - Moleculer: `broker.call("bench.echo", payload)` (NATS transporter, JSON serializer, defaults).
// Payloads: the object `{ user, amount, note: "x".repeat(64) }` and a 64-byte Buffer. Three
// alternating rounds of each, median kept; CPU per request of the caller (process.cpuUsage) and of
// the responder and nats-server (/proc/<pid>/stat). Prints one line `RESULT {json}`.
//
// Environment: MOLECULER_MODULES, NATS_URL, BENCH_SECONDS (per round, default 1.5),
// NATS_SERVER_PID (optional).
"use strict";
const path = require("node:path");
const fs = require("node:fs");
const { spawn } = require("node:child_process");
const modules = process.env.MOLECULER_MODULES;
const { ServiceBroker } = require(path.join(modules, "moleculer"));
const { connect } = require(path.join(modules, "nats"));

const url = process.env.NATS_URL;
const seconds = Number(process.env.BENCH_SECONDS || 1.5);
const serverPid = process.env.NATS_SERVER_PID ? Number(process.env.NATS_SERVER_PID) : undefined;
const TICK = 100; // clock ticks per second of /proc/<pid>/stat on Linux

function cpuOf(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return ((Number(rest[11]) + Number(rest[12])) * 1e6) / TICK;
  } catch {
    return NaN;
  }
}
function selfCpu() {
  const u = process.cpuUsage();
  return u.user + u.system;
}

async function throughput(fn, secs, inflight = 64) {
  let count = 0;
  const until = performance.now() + secs * 1000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (performance.now() < until) {
      await fn();
      count++;
    }
  }));
  return { rate: count / ((performance.now() - t0) / 1000), count };
}

/**
 * Request/reply at the protocol's fastest: one reply subscription, a token per request, a map of
 * pending requests (what Moleculer's transporter does too: one subscription per node for replies).
 */
function rawMux(nc, subject, data) {
  const prefix = `_INBOX.${Math.random().toString(36).slice(2)}`;
  const pending = new Map();
  let seq = 0;
  nc.subscribe(`${prefix}.*`, {
    callback: (_err, msg) => {
      const token = msg.subject.slice(prefix.length + 1);
      const done = pending.get(token);
      if (done) {
        pending.delete(token);
        done(msg.data);
      }
    },
  });
  return () =>
    new Promise((resolve) => {
      const token = (++seq).toString(36);
      pending.set(token, resolve);
      nc.publish(subject, data, { reply: `${prefix}.${token}` });
    });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function startResponder() {
  const child = spawn(process.execPath, [path.join(__dirname, "responder.cjs")], {
    env: { ...process.env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("responder not ready in 30 s")), 30_000);
    child.stdout.on("data", (d) => {
      buf += d;
      const line = buf.split("\n").find((l) => l.startsWith("READY"));
      if (line) {
        clearTimeout(timer);
        resolve({ child, info: JSON.parse(line.slice(6)) });
      }
    });
    child.on("exit", (code) => reject(new Error(`responder exited with ${code}`)));
  });
}

async function main() {
  const { child, info } = await startResponder();
  const broker = new ServiceBroker({
    nodeID: "mol-caller",
    transporter: { type: "NATS", options: { url } },
    logger: false,
  });
  await broker.start();
  await broker.waitForServices("bench", 30_000);
  const nc = await connect({ servers: url, noAsyncTraces: true });
  const result = { moleculer: info.moleculer, node: process.version };
  const payloads = [
    ["Obj", { user: "alice", amount: 42, note: "x".repeat(64) }],
    ["", Buffer.alloc(64, 7)],
  ];
  try {
    for (const [k, payload] of payloads) {
      const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload));
      const request = () => nc.request("molbench.raw", bytes, { timeout: 5000 });
      const mux = rawMux(nc, "molbench.raw", bytes);
      const call = () => broker.call("bench.echo", payload, { timeout: 5000 });
      for (let i = 0; i < 500; i++) await Promise.all([request(), mux(), call()]); // warm up
      const runs = { request: [], mux: [], mol: [] };
      const cpu = { request: [[], [], []], mux: [[], [], []], mol: [[], [], []] };
      for (let round = 0; round < 3; round++) {
        for (const [name, fn] of [["request", request], ["mux", mux], ["mol", call]]) {
          const c0 = [selfCpu(), cpuOf(child.pid), serverPid ? cpuOf(serverPid) : NaN];
          const r = await throughput(fn, seconds);
          const c1 = [selfCpu(), cpuOf(child.pid), serverPid ? cpuOf(serverPid) : NaN];
          runs[name].push(r.rate);
          for (let j = 0; j < 3; j++) cpu[name][j].push((c1[j] - c0[j]) / r.count);
        }
      }
      // Ratios against both raw baselines: the client's request() and the hand-made mux.
      for (const name of ["request", "mux", "mol"]) {
        const N = name[0].toUpperCase() + name.slice(1);
        result[`${name}PerSec${k}`] = median(runs[name]);
        for (const [j, side] of [[0, "Caller"], [1, "Responder"], [2, "Server"]]) {
          result[`${name}Cpu${side}${k}`] = median(cpu[name][j]);
        }
        if (name !== "mol") result[`ratio${N}${k}`] = median(runs.mol) / median(runs[name]);
      }
    }
  } finally {
    await nc.close();
    await broker.stop();
    child.kill("SIGTERM");
  }
  console.log(`RESULT ${JSON.stringify(result)}`);
}
main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
