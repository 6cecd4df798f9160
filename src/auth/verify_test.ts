import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { UnauthorizedError } from "../errors.ts";
import { type AuthOptions, createVerifier } from "./verify.ts";

const SECRET = new TextEncoder().encode("a-shared-secret-of-at-least-thirty-two-bytes");
const BASE: AuthOptions = {
  secret: SECRET,
  algorithms: ["HS256"],
  issuer: "https://idp.test/",
  audience: "troupe",
};

interface Sign {
  sub?: string | number | null;
  typ?: string;
  /** Seconds since the epoch; null leaves `iat` out. */
  iat?: number | null;
  /** Seconds from now. */
  expIn?: number;
}

const now = () => Math.floor(Date.now() / 1000);

function sign(o: Sign = {}): Promise<string> {
  const claims: Record<string, unknown> = {};
  if (o.sub !== null) claims.sub = o.sub ?? "alice";
  let t = new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", ...(o.typ !== undefined ? { typ: o.typ } : {}) })
    .setIssuer(BASE.issuer as string)
    .setAudience(BASE.audience as string)
    .setExpirationTime(now() + (o.expIn ?? 600));
  if (o.iat !== null) t = t.setIssuedAt(o.iat ?? now());
  return t.sign(SECRET);
}

async function refused(options: AuthOptions, token: string, pattern: RegExp): Promise<void> {
  await assert.rejects(createVerifier(options).verify(token), (err) => {
    assert.ok(err instanceof UnauthorizedError, String(err));
    assert.match(err.message, pattern);
    return true;
  });
}

Deno.test("verify(): a token without sub, or with an empty or non-string sub, is refused", async () => {
  await refused(BASE, await sign({ sub: null }), /sub/);
  await refused(BASE, await sign({ sub: "" }), /sub/);
  await refused(BASE, await sign({ sub: 42 }), /sub/);
  assert.equal((await createVerifier(BASE).verify(await sign({ sub: "bob" }))).sub, "bob");
});

Deno.test("verify(): auth.typ refuses a token of another type, or without one", async () => {
  const options = { ...BASE, typ: "at+jwt" };
  await refused(options, await sign({ typ: "JWT" }), /typ/);
  await refused(options, await sign(), /typ/);
  const v = createVerifier(options);
  assert.equal((await v.verify(await sign({ typ: "at+jwt" }))).sub, "alice");
  assert.equal((await v.verify(await sign({ typ: "application/at+jwt" }))).sub, "alice");
  // without the option, any typ passes (as before)
  assert.equal((await createVerifier(BASE).verify(await sign({ typ: "JWT" }))).sub, "alice");
  assert.throws(() => createVerifier({ ...BASE, typ: "" }), TypeError);
});

Deno.test("verify(): auth.maxTokenAge refuses an old token, and one without iat", async () => {
  const options = { ...BASE, maxTokenAge: 60 };
  await refused(options, await sign({ iat: now() - 120, expIn: 3600 }), /iat|age|old/);
  await refused(options, await sign({ iat: null }), /iat/);
  assert.equal((await createVerifier(options).verify(await sign({ iat: now() - 5 }))).sub, "alice");
  assert.throws(() => createVerifier({ ...BASE, maxTokenAge: 0 }), RangeError);
  assert.throws(() => createVerifier({ ...BASE, maxTokenAge: Infinity }), RangeError);
});

Deno.test("verify(): a token accepted once is cached no longer than maxTokenAge allows", async () => {
  const v = createVerifier({ ...BASE, maxTokenAge: 30 });
  const young = await sign({ iat: now() - 25, expIn: 3600 });
  assert.equal((await v.verify(young)).sub, "alice");
  assert.ok(v.cached(young), "cached while young");
  // issued 31 s ago: verified now it is refused, so it must not be in the cache either
  const old = await sign({ iat: now() - 31, expIn: 3600 });
  await assert.rejects(v.verify(old), UnauthorizedError);
  assert.equal(v.cached(old), undefined);
});

Deno.test("verify(): a token valid for months is accepted and stays cached", async () => {
  const v = createVerifier(BASE);
  const token = await sign({ expIn: 90 * 24 * 3600 }); // past setTimeout's 2^31 ms
  assert.equal((await v.verify(token)).sub, "alice");
  assert.equal(v.cached(token)?.sub, "alice");
});
