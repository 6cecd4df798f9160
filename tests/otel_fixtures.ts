/**
 * An OTLP/HTTP (JSON) receiver for the OpenTelemetry tests: processes started with
 * {@link otelEnv} export their traces, metrics and logs to it; the test reads them back.
 */

type OtlpValue = {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
};
type OtlpAttrs = { key: string; value: OtlpValue }[] | undefined;

/** One received span. */
export interface ReceivedSpan {
  readonly service: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly attributes: Record<string, unknown>;
  /** 0 unset, 1 ok, 2 error. */
  readonly status: { code: number; message: string };
  readonly links: { traceId: string; spanId: string }[];
}

/** One received metric data point. */
export interface ReceivedPoint {
  readonly service: string;
  readonly scope: string;
  readonly name: string;
  readonly unit: string;
  readonly attributes: Record<string, unknown>;
  /** A sum's or a gauge's value. */
  readonly value?: number;
  /** A histogram's count. */
  readonly count?: number;
  /** A histogram's sum. */
  readonly sum?: number;
}

/** One received log record. */
export interface ReceivedLog {
  readonly service: string;
  readonly body: string;
  readonly severity: string;
  readonly traceId: string;
  readonly spanId: string;
}

function attrs(list: OtlpAttrs): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) {
    out[key] = value.stringValue ?? value.boolValue ??
      (value.intValue !== undefined ? Number(value.intValue) : value.doubleValue);
  }
  return out;
}

/** A running receiver. */
export interface Receiver extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: the OTLP endpoint. */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  readonly points: ReceivedPoint[];
  readonly logs: ReceivedLog[];
  close(): Promise<void>;
}

/** Starts a receiver on a free loopback port. */
export function startReceiver(): Receiver {
  const spans: ReceivedSpan[] = [];
  const points: ReceivedPoint[] = [];
  const logs: ReceivedLog[] = [];
  // deno-lint-ignore no-explicit-any
  const handle = (path: string, body: any) => {
    if (path === "/v1/traces") {
      for (const rs of body.resourceSpans ?? []) {
        const service = String(attrs(rs.resource?.attributes)["service.name"]);
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              service,
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? "",
              name: s.name,
              kind: s.kind,
              attributes: attrs(s.attributes),
              status: { code: s.status?.code ?? 0, message: s.status?.message ?? "" },
              // deno-lint-ignore no-explicit-any
              links: (s.links ?? []).map((l: any) => ({ traceId: l.traceId, spanId: l.spanId })),
            });
          }
        }
      }
    } else if (path === "/v1/metrics") {
      for (const rm of body.resourceMetrics ?? []) {
        const service = String(attrs(rm.resource?.attributes)["service.name"]);
        for (const sm of rm.scopeMetrics ?? []) {
          for (const m of sm.metrics ?? []) {
            const data = m.histogram ?? m.sum ?? m.gauge;
            for (const p of data?.dataPoints ?? []) {
              points.push({
                service,
                scope: sm.scope?.name ?? "",
                name: m.name,
                unit: m.unit ?? "",
                attributes: attrs(p.attributes),
                ...(p.asDouble !== undefined || p.asInt !== undefined
                  ? { value: Number(p.asDouble ?? p.asInt) }
                  : {}),
                ...(p.count !== undefined ? { count: Number(p.count), sum: Number(p.sum) } : {}),
              });
            }
          }
        }
      }
    } else if (path === "/v1/logs") {
      for (const rl of body.resourceLogs ?? []) {
        const service = String(attrs(rl.resource?.attributes)["service.name"]);
        for (const sl of rl.scopeLogs ?? []) {
          for (const r of sl.logRecords ?? []) {
            logs.push({
              service,
              body: String(r.body?.stringValue ?? ""),
              severity: r.severityText ?? "",
              traceId: r.traceId ?? "",
              spanId: r.spanId ?? "",
            });
          }
        }
      }
    }
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    try {
      handle(path, await req.json());
    } catch {
      return new Response("bad request", { status: 400 });
    }
    return Response.json({});
  });
  const close = () => server.shutdown();
  return {
    url: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    spans,
    points,
    logs,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The environment that turns Deno's OpenTelemetry on, exporting to `receiver` quickly. */
export function otelEnv(receiver: Receiver, service: string): Record<string, string> {
  return {
    OTEL_DENO: "true",
    OTEL_SERVICE_NAME: service,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_METRIC_EXPORT_INTERVAL: "500",
    OTEL_BSP_SCHEDULE_DELAY: "100",
    OTEL_BLRP_SCHEDULE_DELAY: "100",
  };
}

/** Polls `find` every 20 ms until it returns something; throws after `timeout` ms. */
export async function eventually<T>(
  find: () => T | undefined,
  timeout: number,
  what: string,
): Promise<T> {
  const end = performance.now() + timeout;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (performance.now() > end) {
      throw new Error(`Timed out after ${timeout} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
