/**
 * Token verification (jose): who a caller is, from a JWT the node verifies itself. Tokens are
 * checked for signature (with the configured keys only: no key embedded in the token is ever
 * used), algorithm (from the configured list), `exp`, `iss`, `aud`, `sub` (all required) and
 * `nbf`, optionally the header's `typ` and the token's age (`iat`), and cached until they
 * expire. A reminder travels with a short-lived token signed with the cluster secret that names
 * the identity that scheduled it (as verified then) and the actor it belongs to: never more
 * rights than that identity had, and no system principal at all.
 *
 * @module
 */

import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from "jose";
import { UnauthorizedError } from "../errors.ts";
import type { Caller, SystemRule, TopicRule } from "./access.ts";
import { type Clock, systemClock } from "../util/clock.ts";

/** A key to verify tokens with: a public `CryptoKey` or a JWK (with `kid` to pick among several). */
export type VerifyKey = CryptoKey | JsonWebKey & { kid?: string; alg?: string };

/** Options of `createSystem({ auth })`. */
export interface AuthOptions {
  /** URL of a JSON Web Key Set; refetched on an unknown `kid`, at most once per cooldown. */
  jwks?: string | URL;
  /** Keys to verify with (asymmetric algorithms); a `kid` in the token picks among JWKs. */
  keys?: readonly VerifyKey[] | VerifyKey;
  /** Shared secret for HS256/384/512. */
  secret?: string | Uint8Array;
  /** Accepted algorithms, e.g. `["ES256"]` (required; `none` is never accepted). */
  algorithms: readonly string[];
  /** Accepted issuer(s) (`iss`, required in every token). */
  issuer: string | readonly string[];
  /** Accepted audience(s) (`aud`, required in every token). */
  audience: string | readonly string[];
  /** Leeway for `exp`, `nbf` and `maxTokenAge`, in seconds. @default {0} */
  clockTolerance?: number;
  /**
   * The token type required in the JWT header's `typ` (e.g. `"at+jwt"` for OAuth access
   * tokens, RFC 9068), so that an ID token or another kind of JWT from the same issuer is not
   * taken as an access token. Compared as jose does (case-insensitive, `application/` prefix
   * optional). @default {no check}
   */
  typ?: string;
  /**
   * Oldest token accepted, in seconds since its `iat` (which it must then carry): a token
   * issued longer ago is refused even if its `exp` is later. @default {no check}
   */
  maxTokenAge?: number;
  /** The roles of a verified caller. @default {`claims.roles` when it is an array, else `scope` split on spaces} */
  roles?: (claims: Readonly<Record<string, unknown>>) => readonly string[];
  /** System-wide rules, decided before a type's own `access`. */
  rules?: readonly SystemRule[];
  /** Who may publish and subscribe to topics with a token. */
  topics?: readonly TopicRule[];
  /**
   * Secret shared by the nodes of a cluster, to sign the tokens reminders fire with (they carry
   * the identity that scheduled them across nodes). @default {a random secret of this node:
   * reminders then work only for actors hosted where they fire}
   */
  clusterSecret?: string | Uint8Array;
  /** Longest token accepted, in bytes. @default {8192} */
  maxTokenBytes?: number;
  /** Least time between two fetches of the remote JWKS, ms. @default {30000} */
  jwksCooldown?: number;
  /** Timeout of one JWKS fetch, ms. @default {5000} */
  jwksTimeout?: number;
}

/**
 * What a message's token proves: who sent it (undefined: nobody signed in), and, for a token
 * the cluster signed for a reminder, the actor the message comes from.
 */
export interface Verified {
  /** The verified identity, if any. */
  readonly caller: Caller | undefined;
  /** The actor (`type/id`) that sent it, proven by the cluster's signature. */
  readonly from?: string;
}

/** Verifies tokens, with a cache; see {@link createVerifier}. */
export interface Verifier {
  /** The caller of a user's token already verified and not yet expired, without waiting. */
  cached(token: string): Caller | undefined;
  /** Verifies a user's token; rejects with `UnauthorizedError`. */
  verify(token: string): Promise<Caller>;
  /** What a message's token proves (a user's token, or a reminder's), without waiting. */
  cachedMessage(token: string): Verified | undefined;
  /** Verifies a message's token (a user's token, or a reminder's); rejects `unauthorized`. */
  verifyMessage(token: string): Promise<Verified>;
  /**
   * A short-lived token, signed with the cluster secret, for a message that actor `from` sends
   * itself on behalf of `caller` (the identity that scheduled a reminder, as verified then).
   */
  delegate(caller: Caller | undefined, from: string): Promise<string>;
}

const CACHE_MAX = 10_000;
const CLUSTER_ISSUER = "troupe:cluster";
const CLUSTER_TYP = "troupe-delegated";
const CLUSTER_TTL_S = 600;
const EMBEDDED_KEY_HEADERS = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"];

function defaultRoles(claims: Readonly<Record<string, unknown>>): readonly string[] {
  if (Array.isArray(claims.roles)) return claims.roles.filter((r) => typeof r === "string");
  if (typeof claims.scope === "string") return claims.scope.split(" ").filter(Boolean);
  return [];
}

const bytes = (s: string | Uint8Array) => typeof s === "string" ? new TextEncoder().encode(s) : s;

/**
 * Makes the verifier of a node's `auth` options. Throws `TypeError` for incomplete options.
 * Tokens' `exp`, `nbf` and `iat`, the cache and delegated tokens follow `clock`'s wall time
 * (the node's clock; `systemClock` by default).
 *
 * @example
 * ```ts
 * import { createVerifier } from "./verify.ts";
 * const v = createVerifier({
 *   secret: "a-long-shared-secret-of-at-least-32-bytes!",
 *   algorithms: ["HS256"],
 *   issuer: "https://idp.example/",
 *   audience: "troupe",
 * });
 * await v.verify("not a token").catch((err) => err.code); // "unauthorized"
 * ```
 */
export function createVerifier(options: AuthOptions, clock: Clock = systemClock): Verifier {
  const algorithms = [...(options.algorithms ?? [])];
  if (algorithms.length === 0) {
    throw new TypeError("auth.algorithms is required: list the accepted algorithms");
  }
  if (algorithms.some((a) => a.toLowerCase() === "none")) {
    throw new TypeError('auth.algorithms: "none" is never accepted');
  }
  if (!options.issuer || !options.audience) {
    throw new TypeError("auth.issuer and auth.audience are required (iss and aud are checked)");
  }
  const sources = [options.jwks, options.keys, options.secret].filter((s) => s !== undefined);
  if (sources.length !== 1) {
    throw new TypeError("auth needs exactly one of jwks, keys or secret");
  }
  type KeyInput = Parameters<typeof jwtVerify>[1];
  let key: KeyInput;
  if (options.jwks !== undefined) {
    key = createRemoteJWKSet(new URL(String(options.jwks)), {
      cooldownDuration: options.jwksCooldown ?? 30_000,
      cacheMaxAge: 10 * 60_000,
      timeoutDuration: options.jwksTimeout ?? 5000,
    }) as KeyInput;
  } else if (options.secret !== undefined) {
    key = bytes(options.secret);
  } else {
    const keys = Array.isArray(options.keys) ? options.keys : [options.keys];
    if (keys.every((k) => typeof k === "object" && k !== null && "kty" in k)) {
      key = createLocalJWKSet({ keys: keys as JWK[] }) as KeyInput;
    } else if (keys.length === 1 && keys[0] instanceof CryptoKey) {
      key = keys[0];
    } else {
      throw new TypeError("auth.keys: JWKs, or one CryptoKey");
    }
  }
  const roles = options.roles ?? defaultRoles;
  const maxBytes = options.maxTokenBytes ?? 8192;
  const clusterSecret = bytes(
    options.clusterSecret ?? crypto.getRandomValues(new Uint8Array(32)),
  );
  if (options.typ !== undefined && (typeof options.typ !== "string" || options.typ === "")) {
    throw new TypeError('auth.typ must be a token type such as "at+jwt"');
  }
  if (
    options.maxTokenAge !== undefined &&
    !(options.maxTokenAge > 0 && Number.isFinite(options.maxTokenAge))
  ) {
    throw new RangeError(`auth.maxTokenAge must be a positive number of seconds`);
  }
  const verifyOptions: Parameters<typeof jwtVerify>[2] & object = {
    algorithms,
    issuer: options.issuer as string | string[],
    audience: options.audience as string | string[],
    clockTolerance: options.clockTolerance ?? 0,
    requiredClaims: ["exp", "iss", "aud", "sub", ...options.maxTokenAge ? ["iat"] : []],
    ...(options.typ !== undefined ? { typ: options.typ } : {}),
    ...(options.maxTokenAge !== undefined ? { maxTokenAge: options.maxTokenAge } : {}),
  };
  const cache = new Map<string, { verified: Verified; until: number }>();
  const pending = new Map<string, Promise<Verified>>();

  const remember = (token: string, verified: Verified, exp: number) => {
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(token, { verified, until: exp * 1000 });
    return verified;
  };

  const check = async (token: string): Promise<Verified> => {
    if (token.length > maxBytes) {
      throw new UnauthorizedError(
        `Token of ${token.length} bytes exceeds the limit of ${maxBytes}`,
      );
    }
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new UnauthorizedError("Token is not a JWT");
    }
    for (const h of EMBEDDED_KEY_HEADERS) {
      if (h in header) throw new UnauthorizedError(`Token header "${h}" is not accepted`);
    }
    let payload: JWTPayload;
    try {
      if (header.alg === "HS256" && header.typ === CLUSTER_TYP) {
        payload = (await jwtVerify(token, clusterSecret, {
          algorithms: ["HS256"],
          issuer: CLUSTER_ISSUER,
          typ: CLUSTER_TYP,
          requiredClaims: ["exp"],
          currentDate: new Date(clock.now()),
        })).payload;
        return remember(token, delegated(payload), payload.exp!);
      }
      payload = (await jwtVerify(token, key as Uint8Array, {
        ...verifyOptions,
        currentDate: new Date(clock.now()), // `exp`, `nbf` and `iat` on the node's clock
      })).payload;
    } catch (err) {
      throw new UnauthorizedError(`Token refused: ${(err as Error).message}`, { cause: err });
    }
    if (typeof payload.sub !== "string" || payload.sub === "") {
      throw new UnauthorizedError('Token refused: its "sub" claim must be a non-empty string');
    }
    const claims = payload as Readonly<Record<string, unknown>>;
    const caller: Caller = { sub: payload.sub, roles: roles(claims), claims };
    // cached no longer than it is valid: until `exp`, or until it is too old
    const tooOld = options.maxTokenAge === undefined
      ? Infinity
      : payload.iat! + options.maxTokenAge + (options.clockTolerance ?? 0);
    return remember(token, { caller }, Math.min(payload.exp!, tooOld));
  };

  const cachedMessage = (token: string): Verified | undefined => {
    const hit = cache.get(token);
    if (!hit) return undefined;
    if (hit.until <= clock.now()) {
      cache.delete(token);
      return undefined;
    }
    return hit.verified;
  };
  const verifyMessage = (token: string): Promise<Verified> => {
    const hit = cachedMessage(token);
    if (hit) return Promise.resolve(hit);
    let p = pending.get(token);
    if (!p) {
      p = check(token).finally(() => pending.delete(token));
      pending.set(token, p);
    }
    return p;
  };
  /** A user's token: a reminder's is not one (it names an actor, not only a caller). */
  const userOnly = (v: Verified): Caller => {
    if (v.from !== undefined || v.caller === undefined) {
      throw new UnauthorizedError("Token refused: a cluster token is not a caller's token");
    }
    return v.caller;
  };

  return {
    cached(token) {
      const v = cachedMessage(token);
      return v === undefined || v.from !== undefined ? undefined : v.caller;
    },
    verify: (token) => verifyMessage(token).then(userOnly),
    cachedMessage,
    verifyMessage,
    async delegate(caller, from) {
      const now = Math.floor(clock.now() / 1000);
      const troupe: Record<string, unknown> = { from };
      if (caller) {
        troupe.sub = caller.sub;
        troupe.roles = [...caller.roles];
        troupe.claims = caller.claims;
      }
      return await new SignJWT({ troupe })
        .setProtectedHeader({ alg: "HS256", typ: CLUSTER_TYP })
        .setIssuer(CLUSTER_ISSUER)
        .setIssuedAt(now)
        .setExpirationTime(now + CLUSTER_TTL_S)
        .sign(clusterSecret);
    },
  };
}

/** What a cluster token for a reminder proves: its actor, and the identity that scheduled it. */
function delegated(payload: JWTPayload): Verified {
  const t = payload.troupe as
    | { from?: unknown; sub?: unknown; roles?: unknown; claims?: unknown }
    | undefined;
  if (typeof t?.from !== "string") {
    throw new UnauthorizedError("Token refused: a cluster token without its actor");
  }
  if (typeof t.sub !== "string" || t.sub === "") return { caller: undefined, from: t.from };
  const roles = Array.isArray(t.roles) ? t.roles.filter((r) => typeof r === "string") : [];
  const claims = typeof t.claims === "object" && t.claims !== null
    ? t.claims as Readonly<Record<string, unknown>>
    : {};
  return { caller: { sub: t.sub, roles, claims }, from: t.from };
}
