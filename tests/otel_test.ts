/**
 * OpenTelemetry across processes: two node processes (`orders`, `stock`) and a client process
 * serving the HTTP gateway, on a real nats-server, each with Deno's OpenTelemetry on
 * (`OTEL_DENO=true`) exporting OTLP/HTTP JSON to a receiver this test runs.
 */
import assert from "node:assert/strict";
import { startNatsCluster, startNodeProcess } from "../adapters/testing/mod.ts";
import {
  eventually,
  otelEnv,
  type ReceivedPoint,
  type ReceivedSpan,
  startReceiver,
} from "./otel_fixtures.ts";

const NODE = new URL("./nodes/otel_node.ts", import.meta.url);
const SERVER = 2, CLIENT = 3, PRODUCER = 4, CONSUMER = 5, ERROR = 2;

const hex = (bytes: number) =>
  [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");

Deno.test({
  name:
    "OpenTelemetry: gateway → client → orders node → stock node is one trace, with metrics and logs",
  async fn() {
    await using nats = await startNatsCluster();
    await using receiver = startReceiver();
    const dir = await Deno.makeTempDir({ prefix: "troupe-otel-" });
    const base = {
      TROUPE_SERVERS: nats.urls[0]!,
      TROUPE_JOURNAL: `file:${dir}/journal.db`,
      TROUPE_LEASE_TTL: "3000",
    };
    const start = (role: string, node: string) =>
      startNodeProcess({
        script: NODE,
        env: { ...base, ...otelEnv(receiver, role), TROUPE_ROLE: role, TROUPE_NODE: node },
      });
    try {
      await using _orders = await start("orders", "orders-1");
      await using _stock = await start("stock", "stock-1");
      await using client = await start("client", "client-1");
      const api = `http://127.0.0.1:${client.info.port}/api`;
      const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
        fetch(`${api}/${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify(body),
        });

      // 1. One ask through the gateway, continuing the caller's trace.
      const traceId = hex(16);
      const callerSpan = hex(8);
      const traceparent = `00-${traceId}-${callerSpan}-01`;
      const res = await post("order/o1/place", "apple", { traceparent });
      assert.equal(res.status, 200, await res.clone().text());
      assert.deepEqual(await res.json(), { items: 1, reserved: 1 });

      const inTrace = () => receiver.spans.filter((s) => s.traceId === traceId);
      const named = (name: string, service?: string) =>
        inTrace().find((s) => s.name === name && (!service || s.service === service));
      await eventually(() => named("process stock.reserve"), 15_000, "the stock node's span");
      const http = await eventually(
        () => inTrace().find((s) => s.service === "client" && s.parentSpanId === callerSpan),
        10_000,
        "the gateway's HTTP span",
      );
      assert.equal(http.kind, SERVER);
      const sendPlace = await eventually(() => named("send order.place", "client"), 5_000, "send");
      const processPlace = await eventually(
        () => named("process order.place", "orders"),
        5_000,
        "process order.place",
      );
      const sendReserve = await eventually(() => named("send stock.reserve", "orders"), 5_000, "");
      const processReserve = named("process stock.reserve", "stock")!;
      // The parent/child links, across the three processes.
      assert.equal(sendPlace.parentSpanId, http.spanId);
      assert.equal(processPlace.parentSpanId, sendPlace.spanId);
      assert.equal(sendReserve.parentSpanId, processPlace.spanId);
      assert.equal(processReserve.parentSpanId, sendReserve.spanId);
      // Kinds and attributes as the contract says.
      assert.deepEqual([sendPlace.kind, processPlace.kind], [CLIENT, SERVER]);
      assert.deepEqual(pick(sendPlace), ["order", "o1", "place", "client-1"]);
      assert.deepEqual(pick(processPlace), ["order", "o1", "place", "orders-1"]);
      assert.deepEqual(pick(sendReserve), ["stock", "apple", "reserve", "orders-1"]);
      assert.deepEqual(pick(processReserve), ["stock", "apple", "reserve", "stock-1"]);
      for (const s of [sendPlace, processPlace, sendReserve, processReserve]) {
        assert.notEqual(s.status.code, ERROR, `${s.name} is not an error`);
      }

      // 2. A failing ask marks its spans, on both sides.
      const failing = hex(16);
      const refused = await post("order/o2/refuse", "no stock", {
        traceparent: `00-${failing}-${hex(8)}-01`,
      });
      assert.equal(refused.status, 422);
      await refused.body?.cancel();
      const sides = [["send order.refuse", "client"], ["process order.refuse", "orders"]] as const;
      for (const [name, service] of sides) {
        const span = await eventually(
          () => receiver.spans.find((s) => s.traceId === failing && s.name === name),
          10_000,
          name,
        );
        assert.equal(span.service, service);
        assert.equal(span.status.code, ERROR, `${name} has status ERROR`);
        assert.equal(span.attributes["error.type"], "refused");
        assert.match(span.status.message, /refused: no stock/);
      }

      // 3. A tell: PRODUCER on the caller, CONSUMER where it runs.
      const told = hex(16);
      const accepted = await post("order/o4/note", "hi", {
        traceparent: `00-${told}-${hex(8)}-01`,
        prefer: "respond-async",
      });
      assert.equal(accepted.status, 202);
      await accepted.body?.cancel();
      const tellSpans = await eventually(
        () => {
          const send = receiver.spans.find((s) =>
            s.traceId === told && s.name === "send order.note"
          );
          const proc = receiver.spans.find((s) =>
            s.traceId === told && s.name === "process order.note"
          );
          return send && proc ? [send, proc] : undefined;
        },
        10_000,
        "the tell's spans",
      );
      assert.deepEqual(tellSpans.map((s) => s.kind), [PRODUCER, CONSUMER]);
      assert.equal(tellSpans[1]!.parentSpanId, tellSpans[0]!.spanId);

      // 4. A handler's crash is logged through OpenTelemetry, with the request's trace.
      const crashed = hex(16);
      const crash = await post("order/o3/crash", null, {
        traceparent: `00-${crashed}-${hex(8)}-01`,
      });
      assert.equal(crash.status, 500);
      await crash.body?.cancel();
      const log = await eventually(
        () => receiver.logs.find((l) => l.traceId === crashed && /Handler failed/.test(l.body)),
        10_000,
        "the crash's log record",
      );
      assert.equal(log.service, "orders");
      assert.equal(log.severity, "ERROR");
      assert.match(log.body, /a bug in order\.crash/);
      const crashSpan = await eventually(
        () => receiver.spans.find((s) => s.traceId === crashed && s.name === "process order.crash"),
        10_000,
        "the crash's span",
      );
      assert.equal(log.spanId, crashSpan.spanId, "the log names the turn's span");
      assert.equal(crashSpan.status.code, ERROR);
      assert.equal(crashSpan.attributes["error.type"], "internal");

      // 5. A trace its caller does not sample records nothing on its way (the decision is
      // passed on), while the ask works: a second client samples nothing. A sampled trace sent
      // after it is the barrier (each process exports its spans in order).
      await using quiet = await startNodeProcess({
        script: NODE,
        env: {
          ...base,
          ...otelEnv(receiver, "quiet"),
          OTEL_TRACES_SAMPLER: "always_off",
          TROUPE_ROLE: "client",
          TROUPE_NODE: "client-2",
        },
      });
      const unsampled = hex(16);
      const notSampled = await fetch(`http://127.0.0.1:${quiet.info.port}/api/order/o5/place`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          traceparent: `00-${unsampled}-${hex(8)}-01`,
        },
        body: JSON.stringify("pear"),
      });
      assert.equal(notSampled.status, 200);
      await notSampled.body?.cancel();
      const barrier = hex(16);
      const loud = await post("order/o6/place", "plum", {
        traceparent: `00-${barrier}-${hex(8)}-01`,
      });
      assert.equal(loud.status, 200);
      await loud.body?.cancel();
      await eventually(
        () =>
          receiver.spans.find((s) => s.traceId === barrier && s.name === "process stock.reserve"),
        10_000,
        "the barrier's last span",
      );
      await eventually(
        () => receiver.spans.find((s) => s.traceId === barrier && s.service === "client"),
        10_000,
        "the barrier's client spans",
      );
      assert.deepEqual(receiver.spans.filter((s) => s.traceId === unsampled), []);

      // 6. Metrics arrive with their names and attributes.
      const metric = (service: string, name: string, match: Record<string, unknown>) =>
        receiver.points.findLast((p) =>
          p.service === service && p.name === name &&
          Object.entries(match).every(([k, v]) => p.attributes[k] === v)
        );
      const expectMetric = (service: string, name: string, match: Record<string, unknown>) =>
        eventually(() => metric(service, name, match), 10_000, `${name} from ${service}`);
      const askOk = await expectMetric("client", "troupe.ask.duration", {
        "troupe.actor.type": "order",
        "troupe.handler": "place",
        outcome: "ok",
        "troupe.node": "client-1",
      });
      assert.equal(askOk.unit, "s");
      assert.ok(askOk.count! >= 1 && askOk.sum! > 0);
      const askRefused = await expectMetric("client", "troupe.ask.duration", {
        "troupe.handler": "refuse",
        outcome: "error",
        "error.type": "refused",
      });
      assert.ok(askRefused.count! >= 1);
      await expectMetric("orders", "troupe.ask.duration", {
        "troupe.actor.type": "stock",
        "troupe.handler": "reserve",
        outcome: "ok",
      });
      const errors = await expectMetric("client", "troupe.errors", {
        "error.type": "refused",
        "troupe.actor.type": "order",
        "troupe.handler": "refuse",
      });
      assert.ok(errors.value! >= 1);
      const active = await expectMetric("orders", "troupe.activations", {
        "troupe.actor.type": "order",
        "troupe.node": "orders-1",
      });
      assert.ok(active.value! >= 1, `activations: ${active.value}`);
      await expectMetric("orders", "troupe.mailbox.depth", { "troupe.actor.type": "order" });
      const commit = await expectMetric("stock", "troupe.journal.commit.duration", {
        "troupe.actor.type": "stock",
      });
      assert.equal(commit.unit, "s");
      assert.ok(commit.count! >= 1);
      const appends: ReceivedPoint = await expectMetric("orders", "troupe.journal.appends", {
        "troupe.actor.type": "order",
      });
      assert.ok(appends.value! >= 1);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("OpenTelemetry: a reminder's trace links to the turn that scheduled it", async () => {
  await using receiver = startReceiver();
  await using node = await startNodeProcess({
    script: NODE,
    env: { ...otelEnv(receiver, "solo"), TROUPE_ROLE: "reminder" },
  });
  await node.waitForLine(/^FIRED/, 15_000, { past: true });
  const scheduling = await eventually(
    () => receiver.spans.find((s) => s.name === "process timer.later"),
    10_000,
    "the scheduling turn",
  );
  const send = await eventually(
    () => receiver.spans.find((s) => s.name === "send timer.fire"),
    10_000,
    "the reminder's send span",
  );
  assert.deepEqual(send.links, [{ traceId: scheduling.traceId, spanId: scheduling.spanId }]);
  assert.notEqual(send.traceId, scheduling.traceId, "a trace of its own");
  const fired = await eventually(
    () => receiver.spans.find((s) => s.name === "process timer.fire"),
    10_000,
    "the reminder's turn",
  );
  assert.equal(fired.parentSpanId, send.spanId);
});

function pick(s: ReceivedSpan): unknown[] {
  const a = s.attributes;
  return [a["troupe.actor.type"], a["troupe.actor.id"], a["troupe.handler"], a["troupe.node"]];
}
