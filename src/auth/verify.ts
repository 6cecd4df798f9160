/**
 * Token verification (jose): who a caller is, from a JWT the node verifies itself. Tokens are
 * checked for signature (with the configured keys only: no key embedded in the token is ever
 * used), algorithm (from the configured list), `exp`, `iss`, `aud`, `sub` (all required) and
 * `nbf`, optionally the header's `typ` and the token's age (`iat`), and cached until they
 * expire. The system principal (reminders) travels as a short-lived token
 * signed with the cluster secret.
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
import { type Caller, SYSTEM_ROLE, type SystemRule, type TopicRule } from "./access.ts";
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
   * Secret shared by the nodes of a cluster, to sign the system principal's tokens (reminders
   * cross nodes with them). @default {a random secret of this node: reminders then work only
   * for actors hosted where they fire}
   */
  clusterSecret?: string | Uint8Array;
  /** Longest token accepted, in bytes. @default {8192} */
  maxTokenBytes?: number;
  /** Least time between two fetches of the remote JWKS, ms. @default {30000} */
  jwksCooldown?: number;
  /** Timeout of one JWKS fetch, ms. @default {5000} */
  jwksTimeout?: number;
}

/** Verifies tokens, with a cache; see {@link createVerifier}. */
export interface Verifier {
  /** The caller of a token already verified and not yet expired, without waiting. */
  cached(token: string): Caller | undefined;
  /** Verifies a token; rejects with `UnauthorizedError`. */
  verify(token: string): Promise<Caller>;
  /** A token for the system principal (cached; renewed before it expires). */
  systemToken(): Promise<string>;
}

const CACHE_MAX = 10_000;
const SYSTEM_ISSUER = "troupe:system";
const SYSTEM_TTL_S = 600;
const EMBEDDED_KEY_HEADERS = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"];

function defaultRoles(claims: Readonly<Record<string, unknown>>): readonly string[] {
  if (Array.isArray(claims.roles)) return claims.roles.filter((r) => typeof r === "string");
  if (typeof claims.scope === "string") return claims.scope.split(" ").filter(Boolean);
  return [];
}

const bytes = (s: string | Uint8Array) => typeof s === "string" ? new TextEncoder().encode(s) : s;

/**
 * Makes the verifier of a node's `auth` options. Throws `TypeError` for incomplete options.
 * Tokens' `exp`, `nbf` and `iat`, the cache and the system token follow `clock`'s wall time
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
  const cache = new Map<string, { caller: Caller; until: number }>();
  const pending = new Map<string, Promise<Caller>>();
  let system: { token: string; until: number } | undefined;

  const remember = (token: string, caller: Caller, exp: number) => {
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(token, { caller, until: exp * 1000 });
  };

  const check = async (token: string): Promise<Caller> => {
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
      if (header.alg === "HS256" && isSystemToken(token)) {
        payload = (await jwtVerify(token, clusterSecret, {
          algorithms: ["HS256"],
          issuer: SYSTEM_ISSUER,
          requiredClaims: ["exp"],
          currentDate: new Date(clock.now()),
        })).payload;
        const caller: Caller = { sub: "system", roles: [SYSTEM_ROLE], claims: payload };
        remember(token, caller, payload.exp!);
        return caller;
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
    const caller: Caller = {
      sub: payload.sub,
      roles: roles(claims).filter((r) => r !== SYSTEM_ROLE),
      claims,
    };
    // cached no longer than it is valid: until `exp`, or until it is too old
    const tooOld = options.maxTokenAge === undefined
      ? Infinity
      : payload.iat! + options.maxTokenAge + (options.clockTolerance ?? 0);
    remember(token, caller, Math.min(payload.exp!, tooOld));
    return caller;
  };

  return {
    cached(token) {
      const hit = cache.get(token);
      if (!hit) return undefined;
      if (hit.until <= clock.now()) {
        cache.delete(token);
        return undefined;
      }
      return hit.caller;
    },
    verify(token) {
      const hit = this.cached(token);
      if (hit) return Promise.resolve(hit);
      let p = pending.get(token);
      if (!p) {
        p = check(token).finally(() => pending.delete(token));
        pending.set(token, p);
      }
      return p;
    },
    async systemToken() {
      if (system && system.until - clock.now() > 60_000) return system.token;
      const now = Math.floor(clock.now() / 1000);
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: "HS256", typ: "troupe-system" })
        .setIssuer(SYSTEM_ISSUER)
        .setIssuedAt(now)
        .setExpirationTime(now + SYSTEM_TTL_S)
        .sign(clusterSecret);
      system = { token, until: (now + SYSTEM_TTL_S) * 1000 };
      return token;
    },
  };
}

function isSystemToken(token: string): boolean {
  try {
    return decodeProtectedHeader(token).typ === "troupe-system";
  } catch {
    return false;
  }
}
