/**
 * Access rules: who may call which handler. Per handler in `defineActor({ access })`, plus
 * optional system-wide rules of a node, decided by {@link decide}, which also says which rule
 * decided (`explain`).
 *
 * @module
 */

/** The verified identity of a message's sender (when auth is on). */
export interface Caller {
  /** Subject (user or service id). */
  readonly sub: string;
  /** Roles granted. */
  readonly roles: readonly string[];
  /** All verified claims. */
  readonly claims: Readonly<Record<string, unknown>>;
}

/**
 * One access rule of a handler:
 * - `"public"`: anyone, no token needed;
 * - `"authenticated"`: any verified caller;
 * - `"self"`: the actor itself (its reminders, and what it sends through `ctx.self`), with the
 *   identity its message carries, whoever that is;
 * - `"deny"`: nobody;
 * - `"role:<name>"`: a verified caller holding that role;
 * - a predicate `(caller, id) => boolean` over the verified caller and the actor id;
 * - an array: allowed when any entry allows.
 */
export type AccessRule =
  | "public"
  | "authenticated"
  | "self"
  | "deny"
  | `role:${string}`
  | ((caller: Caller, id: string) => boolean)
  | readonly AccessRule[];

/** Access rules per handler name; `"*"` covers the handlers not listed. */
export type AccessMap<H extends string = string> = { readonly [K in H | "*"]?: AccessRule };

/**
 * A system-wide rule of a node (`createSystem({ auth: { rules } })`). Matching rules decide
 * before a type's own `access`: the highest `priority` wins, and among rules of the same
 * priority a deny wins. When no system rule matches, the type's `access` decides.
 */
export interface SystemRule {
  /** A name for `explain()`. @default {"rule <index>"} */
  name?: string;
  /** Actor type glob (`*` any characters). @default {"*"} */
  type?: string;
  /** Handler glob (`*` any characters). @default {"*"} */
  handler?: string;
  /** Matches only verified callers holding one of these roles. @default {any caller, even anonymous} */
  roles?: readonly string[];
  /** What a match decides. */
  effect: "allow" | "deny";
  /** Higher decides first. @default {0} */
  priority?: number;
}

/** A rule for topics (`createSystem({ auth: { topics } })`): who may publish and subscribe. */
export interface TopicRule {
  /** Topic pattern this rule covers (`*` one token, `>` the rest). */
  topic: string;
  /** Who may publish. @default {"deny"} */
  publish?: AccessRule;
  /** Who may subscribe. @default {"deny"} */
  subscribe?: AccessRule;
}

/** What {@link decide} found. */
export interface Decision {
  /** Whether the call may run. */
  readonly allowed: boolean;
  /** Why not: no valid caller where one is needed, or a caller no rule allows. */
  readonly code?: "unauthorized" | "forbidden";
  /** Which rule decided, e.g. `access.withdraw`, `access.*`, `rule "admins"`. */
  readonly by: string;
}

const KEYWORDS = new Set(["public", "authenticated", "self", "deny"]);

/** Checks an access map when an actor type is defined; throws `TypeError` for a bad one. */
export function validateAccess(type: string, access: unknown, handlers: readonly string[]): void {
  if (typeof access !== "object" || access === null || Array.isArray(access)) {
    throw new TypeError(`access of actor type "${type}" must be an object of rules per handler`);
  }
  for (const [key, rule] of Object.entries(access)) {
    if (key !== "*" && !handlers.includes(key)) {
      throw new TypeError(`access of actor type "${type}" names unknown handler "${key}"`);
    }
    checkRule(rule, `access.${key} of actor type "${type}"`);
  }
}

function checkRule(rule: unknown, where: string): void {
  if (typeof rule === "function") return;
  if (Array.isArray(rule)) {
    if (rule.length === 0) {
      throw new TypeError(`${where}: an empty array allows nobody; use "deny"`);
    }
    for (const r of rule) checkRule(r, where);
    return;
  }
  if (typeof rule === "string" && (KEYWORDS.has(rule) || /^role:.+$/.test(rule))) return;
  throw new TypeError(
    `${where}: "${
      String(rule)
    }" is not a rule ("public", "authenticated", "self", "deny", "role:<name>", a predicate or an array)`,
  );
}

/**
 * Whether one rule allows `caller` (undefined: no valid token) on actor `id`; `self`: the
 * message comes from that actor itself (see {@link decide}).
 */
export function allows(
  rule: AccessRule,
  caller: Caller | undefined,
  id: string,
  self = false,
): boolean {
  if (typeof rule === "string") {
    if (rule === "public") return true;
    if (rule === "self") return self;
    if (caller === undefined || rule === "deny") return false;
    if (rule === "authenticated") return true;
    return caller.roles.includes(rule.slice(5));
  }
  if (typeof rule === "function") {
    if (caller === undefined) return false;
    try {
      return rule(caller, id) === true;
    } catch {
      return false; // a predicate that throws allows nothing
    }
  }
  return rule.some((r) => allows(r, caller, id, self));
}

function glob(pattern: string, value: string): boolean {
  if (pattern === "*") return true;
  if (!pattern.includes("*")) return pattern === value;
  const re = new RegExp(
    "^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$",
  );
  return re.test(value);
}

/**
 * Decides a call to `type.handler` on actor `id` by `caller` (undefined: no valid token), for
 * a node with auth on: system rules first, then the type's `access` (a type without one needs
 * an authenticated caller for every handler; a handler not listed and without `"*"` is denied).
 * `from`: the actor that sent the message, when that is proven (a reminder, carrying a token the
 * cluster signed; or a call made on this node by one of its turns): the rule `"self"` allows it
 * when it is this very actor. Nothing else grants more: there is no system principal.
 */
export function decide(
  type: string,
  handler: string,
  id: string,
  caller: Caller | undefined,
  access: AccessMap | undefined,
  rules: readonly SystemRule[] = [],
  from?: string,
): Decision {
  const refuse = (by: string): Decision => ({
    allowed: false,
    code: caller === undefined && from === undefined ? "unauthorized" : "forbidden",
    by,
  });
  const self = from !== undefined && from === `${type}/${id}`;
  let best: { rule: SystemRule; name: string } | undefined;
  rules.forEach((rule, i) => {
    if (!glob(rule.type ?? "*", type) || !glob(rule.handler ?? "*", handler)) return;
    if (rule.roles && !(caller && rule.roles.some((r) => caller.roles.includes(r)))) return;
    const p = rule.priority ?? 0;
    const bp = best ? best.rule.priority ?? 0 : -Infinity;
    if (p > bp || (p === bp && rule.effect === "deny" && best!.rule.effect !== "deny")) {
      best = { rule, name: rule.name ?? `rule ${i}` };
    }
  });
  if (best) {
    const by = `rule "${best.name}"`;
    return best.rule.effect === "allow" ? { allowed: true, by } : refuse(by);
  }
  if (access === undefined) {
    return caller !== undefined
      ? { allowed: true, by: "default: authenticated" }
      : refuse("default: authenticated");
  }
  const key = Object.hasOwn(access, handler) ? handler : Object.hasOwn(access, "*") ? "*" : "";
  if (key === "") return refuse(`access: "${handler}" not listed and no "*"`);
  const rule = access[key]!;
  return allows(rule, caller, id, self)
    ? { allowed: true, by: `access.${key}` }
    : refuse(`access.${key}`);
}
