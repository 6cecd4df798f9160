/**
 * The HTTP gateway against its baseline, both over real HTTP on loopback (`Deno.serve`) and
 * calling the same in-process actor: (a) `POST /api/account/{id}/deposit` through `gateway()`
 * vs a bare Hono handler doing `system.ref(Account, id).ask("deposit", body)`, one request at
 * a time and 32 in flight; (b) SSE items/s of a streaming handler vs reading the same stream
 * in-process. Run alone: `deno run -A bench/gateway.ts`.
 *
 * @module
 */
import { Hono } from "hono";
import { createSystem, defineActor } from "../mod.ts";
import { gateway } from "../adapters/hono/mod.ts";

const Account = defineActor({
  name: "account",
  initialState: () => ({ balance: 0 }),
  handlers: {
    deposit(ctx, amount: number) {
      ctx.state = { balance: ctx.state.balance + amount };
      return ctx.state.balance;
    },
    async *ticks(_ctx, n: number) {
      for (let i = 0; i < n; i++) yield { i, at: 1_700_000_000_000 + i };
    },
  },
});

/** One figure and its baseline. */
export interface GatewayResult {
  what: string;
  gateway: number;
  baseline: number;
  ratio: number;
}

async function rate(
  n: number,
  inFlight: number,
  one: (i: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < n) await one(next++);
  }));
  return n / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs the gateway benchmarks (three alternating rounds each, median kept). */
export async function benchGateway(): Promise<GatewayResult[]> {
  const system = await createSystem({ actors: [Account], logger: "error" });
  const app = new Hono();
  app.post("/bare/:id/deposit", async (c) => {
    const amount = await c.req.json();
    return c.json(await system.ref(Account, c.req.param("id")).ask("deposit", amount));
  });
  app.route("/api", gateway(system, { expose: [Account] }));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  const base = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
  const post = async (path: string) => {
    const res = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "1",
    });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`${path}: ${res.status}`);
  };
  const out: GatewayResult[] = [];
  try {
    for (const [inFlight, n] of [[1, 2_000], [32, 10_000]] as const) {
      await rate(500, inFlight, (i) => post(`/api/account/w${i % 100}/deposit`)); // warm up
      await rate(500, inFlight, (i) => post(`/bare/w${i % 100}/deposit`));
      const g: number[] = [];
      const b: number[] = [];
      for (let round = 0; round < 3; round++) {
        g.push(await rate(n, inFlight, (i) => post(`/api/account/a${i % 100}/deposit`)));
        b.push(await rate(n, inFlight, (i) => post(`/bare/a${i % 100}/deposit`)));
      }
      const gateway = median(g);
      const baseline = median(b);
      out.push({
        what: `ask round trips/s over HTTP, ${inFlight} in flight`,
        gateway,
        baseline,
        ratio: gateway / baseline,
      });
    }

    const items = 50_000;
    const sse = async () => {
      const t0 = performance.now();
      const res = await fetch(`${base}/api/account/s/ticks`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "text/event-stream" },
        body: String(items),
      });
      // events end with a blank line: count "\n\n", across chunk boundaries too
      let blank = 0;
      let last = "";
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (last === "\n" && value.startsWith("\n")) blank++;
        for (let at = value.indexOf("\n\n"); at !== -1; at = value.indexOf("\n\n", at + 2)) blank++;
        last = value.at(-1) ?? last;
      }
      const seen = blank - 1; // the opening ": stream" comment
      if (seen !== items + 1) throw new Error(`SSE gave ${seen} events`); // + the end event
      return items / ((performance.now() - t0) / 1000);
    };
    const local = async () => {
      const t0 = performance.now();
      let seen = 0;
      for await (const _ of system.ref(Account, "l").stream("ticks", items)) seen++;
      if (seen !== items) throw new Error(`stream gave ${seen}`);
      return items / ((performance.now() - t0) / 1000);
    };
    const s: number[] = [];
    const l: number[] = [];
    for (let round = 0; round < 3; round++) {
      s.push(await sse());
      l.push(await local());
    }
    out.push({
      what: "SSE items/s (one stream, 50k items of ~20 B)",
      gateway: median(s),
      baseline: median(l),
      ratio: median(s) / median(l),
    });
  } finally {
    await server.shutdown();
    await system.close();
  }
  return out;
}

if (import.meta.main) {
  const f = (n: number) => Math.round(n).toLocaleString("en");
  console.log(
    `gateway benchmarks — Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores`,
  );
  for (const r of await benchGateway()) {
    console.log(
      `  ${r.what}: gateway ${f(r.gateway)}/s, baseline ${f(r.baseline)}/s → ratio ${
        r.ratio.toFixed(2)
      }`,
    );
  }
}
