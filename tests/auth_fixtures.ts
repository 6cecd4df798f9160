/** Keys, tokens and actor types for the auth tests (not a test file). */
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { ActorError, type AuthOptions, defineActor } from "../mod.ts";

export const ISSUER = "https://idp.test/";
export const AUDIENCE = "troupe";

/** An ES256 key pair with a kid, its public JWK, a signer, and `auth` options that verify it. */
export async function issuer(kid = "k1") {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: "ES256" };
  const sign = (
    claims: Record<string, unknown> = {},
    o: { exp?: number | null; iss?: string; aud?: string; nbf?: number; header?: object } = {},
  ) => {
    const now = Math.floor(Date.now() / 1000);
    let t = new SignJWT(claims)
      .setProtectedHeader({ alg: "ES256", kid, ...(o.header ?? {}) })
      .setIssuer(o.iss ?? ISSUER)
      .setAudience(o.aud ?? AUDIENCE)
      .setIssuedAt(now);
    if (o.exp !== null) t = t.setExpirationTime(o.exp ?? now + 600);
    if (o.nbf !== undefined) t = t.setNotBefore(o.nbf);
    return t.sign(privateKey);
  };
  const auth: AuthOptions = {
    keys: [jwk],
    algorithms: ["ES256"],
    issuer: ISSUER,
    audience: AUDIENCE,
  };
  return { publicKey, privateKey, jwk, sign, auth };
}

/** Everything the actors saw, for assertions. */
export const seen = {
  activations: 0,
  callers: [] as (string | undefined)[],
  reminded: [] as (string | undefined)[],
};

/** Says who called it. */
export const Who = defineActor({
  name: "who",
  access: { whoami: "authenticated" },
  handlers: {
    whoami(ctx) {
      seen.callers.push(ctx.caller?.sub);
      return ctx.caller ? { sub: ctx.caller.sub, roles: [...ctx.caller.roles] } : null;
    },
  },
});

export const Vault = defineActor({
  name: "vault",
  initialState: () => ({ balance: 0 }),
  events: { moved: (s, e: { amount: number }) => ({ balance: s.balance + e.amount }) },
  access: {
    balance: "public",
    deposit: "authenticated",
    withdraw: ["role:teller", (caller, id) => caller.sub === id],
    whoami: "authenticated",
    relay: "authenticated",
    remind: "authenticated",
    reminded: "self",
    feed: "authenticated",
    "*": "deny",
  },
  onActivate: () => void seen.activations++,
  handlers: {
    balance: (ctx) => ctx.state.balance,
    deposit(ctx, amount: number) {
      ctx.emit("moved", { amount });
      return ctx.state.balance;
    },
    withdraw(ctx, amount: number) {
      if (amount > ctx.state.balance) {
        throw new ActorError("insufficient", { code: "insufficient" });
      }
      ctx.emit("moved", { amount: -amount });
      return ctx.state.balance;
    },
    whoami(ctx) {
      seen.callers.push(ctx.caller?.sub);
      return ctx.caller ? { sub: ctx.caller.sub, roles: [...ctx.caller.roles] } : null;
    },
    /** Calls `who` from inside the turn: the original caller travels. */
    relay(ctx, other: string) {
      return ctx.ref(Who, other).ask("whoami");
    },
    remind(ctx) {
      ctx.schedule(10, "reminded");
      return "scheduled";
    },
    reminded(ctx) {
      seen.reminded.push(ctx.caller?.sub);
    },
    secret: () => "never",
    async *feed() {
      for (let i = 0;; i++) {
        yield i;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  },
});

/** A type without `access`: every handler needs an authenticated caller. */
export const Plain = defineActor({
  name: "plain",
  initialState: () => 0,
  handlers: { ping: () => "pong" },
});

/** What the Safe actor's reminders saw. */
export const safeSeen = { touched: [] as (string | undefined)[] };

/**
 * A public handler that schedules reminders: one to an admin-only handler (it must run only if
 * the scheduler was an admin), one to a handler only the actor itself may call.
 */
export const Safe = defineActor({
  name: "safe",
  initialState: () => ({ wiped: false }),
  events: { wiped: (_s, _e: Record<string, never>) => ({ wiped: true }) },
  access: { poke: "public", peek: "public", wipe: "role:admin", touch: "self" },
  handlers: {
    poke(ctx) {
      ctx.schedule(5, "wipe");
      ctx.schedule(5, "touch");
      return "scheduled";
    },
    wipe(ctx) {
      ctx.emit("wiped", {});
    },
    touch(ctx) {
      safeSeen.touched.push(ctx.caller?.sub);
    },
    peek: (ctx) => ctx.state.wiped,
  },
});
