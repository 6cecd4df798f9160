// The responding side of bench/moleculer/bench.cjs, in its own Node.js process: a Moleculer 0.14
// broker (NATS transporter, default JSON serializer) with an action that echoes its params, and a
// raw `nats` v2 responder echoing the request's bytes. Prints `READY {json}` once both listen.
//
// Environment: MOLECULER_MODULES (a node_modules folder holding moleculer@0.14 and nats@2),
// NATS_URL.
"use strict";
const path = require("node:path");
const modules = process.env.MOLECULER_MODULES;
const { ServiceBroker } = require(path.join(modules, "moleculer"));
const { connect } = require(path.join(modules, "nats"));

async function main() {
  const url = process.env.NATS_URL;
  const broker = new ServiceBroker({
    nodeID: "mol-responder",
    transporter: { type: "NATS", options: { url } },
    logger: false,
  });
  broker.createService({
    name: "bench",
    actions: { echo: (ctx) => ctx.params },
  });
  await broker.start();
  const nc = await connect({ servers: url, noAsyncTraces: true });
  nc.subscribe("molbench.raw", { callback: (_err, msg) => msg.respond(msg.data) });
  await nc.flush();
  console.log(`READY ${JSON.stringify({ pid: process.pid, moleculer: broker.MOLECULER_VERSION })}`);
  process.on("SIGTERM", async () => {
    await nc.close();
    await broker.stop();
    process.exit(0);
  });
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
