/** Actor types and helpers shared by the gateway tests (not part of the package). */
import type { Hono } from "hono";
import { ActorError, createSystem, defineActor, type System } from "../mod.ts";
import { gateway, type GatewayOptions } from "../adapters/hono/mod.ts";

/** Streams of `Wallet.ticks` open right now (incremented on start, decremented in finally). */
export const openTicks = { now: 0, started: 0 };

export const Wallet = defineActor({
  name: "wallet",
  initialState: () => ({ balance: 0 }),
  events: {
    deposited: (s, e: { amount: number }) => ({ balance: s.balance + e.amount }),
    withdrawn: (s, e: { amount: number }) => ({ balance: s.balance - e.amount }),
  },
  handlers: {
    deposit(ctx, amount: number) {
      if (typeof amount !== "number") {
        throw new ActorError("amount must be a number", { code: "bad_amount" });
      }
      ctx.emit("deposited", { amount });
      return ctx.state.balance;
    },
    withdraw(ctx, amount: number) {
      if (amount > ctx.state.balance) {
        throw new ActorError("insufficient funds", {
          code: "insufficient",
          data: { balance: ctx.state.balance },
        });
      }
      ctx.emit("withdrawn", { amount });
      return ctx.state.balance;
    },
    balance: (ctx) => ctx.state.balance,
    echo: (_ctx, v: unknown) => v,
    raise(_ctx, code: string) {
      throw new ActorError(`raised ${code}`, { code });
    },
    crash() {
      throw new Error("a bug with a secret inside");
    },
    async slow(_ctx, ms: number) {
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    },
    hidden: () => "secret",
    async *statement(ctx, n: number | undefined) {
      for (let i = 0; i < (n ?? 3); i++) yield { line: i, balance: ctx.state.balance };
    },
    async *failing(_ctx, after: number) {
      for (let i = 0; i < after; i++) yield i;
      throw new ActorError("the statement broke", { code: "broken" });
    },
    async *ticks(ctx) {
      openTicks.now++;
      openTicks.started++;
      try {
        for (let i = 0;; i++) {
          yield i;
          await new Promise((r) => setTimeout(r, 2));
          if (ctx.signal.aborted) return;
        }
      } finally {
        openTicks.now--;
      }
    },
    async *shout(_ctx, input: AsyncIterable<string>) {
      for await (const m of input) yield m.toUpperCase();
    },
  },
});

export const Resize = defineActor({
  name: "resize",
  stateless: true,
  handlers: {
    half: (_ctx, n: number) => n / 2,
  },
});

export const Tiny = defineActor({
  name: "tiny",
  mailboxSize: 1,
  handlers: {
    async slow(_ctx, ms: number) {
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    },
  },
});

/** A served app on a free loopback port. */
export interface Served extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Stops the server (waits at most 5 s for open requests). */
  close(): Promise<void>;
}

/** Serves `app` on 127.0.0.1 with a free port. */
export function serve(
  app: Hono | { fetch: (req: Request) => Response | Promise<Response> },
): Served {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  const { port } = server.addr as Deno.NetAddr;
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), 5_000)));
      const done = await Promise.race([server.shutdown().then(() => "done" as const), late]);
      clearTimeout(timer);
      if (done === "late") throw new Error("The server did not shut down within 5 s");
    })();
  return { url: `http://127.0.0.1:${port}`, close, [Symbol.asyncDispose]: close };
}

/** A one-node system hosting the fixtures and a gateway on loopback, mounted at `/api`. */
export async function startGateway(
  options: Partial<GatewayOptions> = {},
): Promise<{ system: System; served: Served; api: string } & AsyncDisposable> {
  const system = await createSystem({ actors: [Wallet, Resize, Tiny], logger: "error" });
  const { Hono } = await import("hono");
  const app = new Hono();
  app.route(
    "/api",
    gateway(system, {
      expose: {
        wallet: [
          "deposit",
          "withdraw",
          "balance",
          "echo",
          "raise",
          "crash",
          "slow",
          "statement",
          "failing",
          "ticks",
          "shout",
        ],
        resize: Resize,
        tiny: Tiny,
      },
      actors: [Wallet],
      ...options,
    }),
  );
  const served = serve(app);
  const close = async () => {
    try {
      await served.close();
    } finally {
      await system.close();
    }
  };
  return { system, served, api: `${served.url}/api`, [Symbol.asyncDispose]: close };
}

/** Posts JSON and returns the status and the parsed body. */
export async function post(
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: unknown; headers: Headers }> {
  const init: RequestInit = {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
  };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(url, init);
  const text = await res.text();
  return {
    status: res.status,
    body: text === "" ? undefined : JSON.parse(text),
    headers: res.headers,
  };
}
