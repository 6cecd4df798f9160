/**
 * Access checks of the message path, in one place: who may call a handler (checked in local
 * delivery, on the node that runs it, for every call from anywhere) and who may publish or
 * subscribe to a topic with a token (checked when the node's own `publish`/`subscribe` is
 * given one). Identity comes from the token alone, verified here (cached until it expires);
 * the rules are the type's `access`, the node's system `rules` and its topic rules.
 *
 * @module
 */

import type { ActorDefinition, AnyActorTypes } from "../actor/define.ts";
import { allows, decide, type Decision, type SystemRule, type TopicRule } from "../auth/access.ts";
import type { Verified, Verifier } from "../auth/verify.ts";
import { ForbiddenError, UnauthorizedError } from "../errors.ts";
import { patternCovers } from "../mesh/subject.ts";
import { type Clock, MAX_TIMER_MS, type TimerId } from "../util/clock.ts";
import type { Call } from "./call.ts";

/** What no token proves. */
const NOBODY: Verified = Object.freeze({ caller: undefined });

/** The auth of a node: how tokens are verified, its system-wide rules and its topic rules. */
export interface NodeAuth {
  readonly verifier: Verifier;
  readonly rules: readonly SystemRule[];
  readonly topics: readonly TopicRule[];
}

/** What runs an allowed call (one function per node: nothing is allocated per call). */
export type Pass = (def: ActorDefinition<AnyActorTypes>, call: Call) => void;

/** How a publish or subscribe uses a topic. */
export type TopicAction = "publish" | "subscribe";

/** The access checks of one node (see the module doc). */
export class Access {
  readonly #auth: NodeAuth | undefined;
  readonly #clock: Clock;

  /** @param clock The node's clock: a stream ends when its caller's token expires on it. */
  constructor(auth: NodeAuth | undefined, clock: Clock) {
    this.#auth = auth;
    this.#clock = clock;
  }

  /** The node's auth, when it has it on. */
  get auth(): NodeAuth | undefined {
    return this.#auth;
  }

  /**
   * Decides a call that passed the message checks and its payload schema: admits it with its
   * verified caller and calls `pass(def, call)`, or rejects it (`unauthorized`, `forbidden`). A stream
   * lives no longer than its caller's token.
   */
  call(def: ActorDefinition<AnyActorTypes>, call: Call, pass: Pass): void {
    const auth = this.#auth;
    if (!auth) {
      call.admit(undefined);
      return pass(def, call);
    }
    const token = call.token;
    if (token === undefined) return this.#decided(auth, def, call, NOBODY, pass);
    const known = auth.verifier.cachedMessage(token);
    if (known) return this.#decided(auth, def, call, known, pass);
    auth.verifier.verifyMessage(token).then(
      (verified) => this.#decided(auth, def, call, verified, pass),
      (err) => call.reject(err),
    );
  }

  #decided(
    auth: NodeAuth,
    def: ActorDefinition<AnyActorTypes>,
    call: Call,
    verified: Verified,
    pass: Pass,
  ): void {
    const { caller } = verified;
    // Where the message comes from: proven by a reminder's cluster token, or set on this node.
    const from = verified.from ?? call.from;
    const d = decide(def.name, call.handler, call.id, caller, def.access, auth.rules, from);
    if (!d.allowed) {
      const what = `${def.name}.${call.handler}`;
      return call.reject(
        d.code === "unauthorized"
          ? new UnauthorizedError(`${what} needs a valid token (${d.by})`)
          : new ForbiddenError(
            `${
              caller ? `Caller "${caller.sub}"` : `A message from ${from}`
            } may not call ${what} (${d.by})`,
          ),
      );
    }
    call.admit(caller, verified.from);
    if (call.kind === "stream" && call.sink && typeof caller?.claims.exp === "number") {
      // A stream lives no longer than its caller's token (a timer of at most 2^31 - 1 ms at a
      // time: a longer delay would overflow setTimeout and fire at once).
      const sink = call.sink;
      const expires = caller.claims.exp * 1000;
      const clock = this.#clock;
      let timer: TimerId | undefined;
      const arm = () => {
        const left = expires - clock.now();
        if (left <= 0) return sink.error(new UnauthorizedError("The caller's token expired"));
        timer = clock.setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      };
      arm();
      call.finally(() => clock.clearTimeout(timer));
      sink.signal.addEventListener("abort", () => clock.clearTimeout(timer), { once: true });
    }
    pass(def, call);
  }

  /**
   * Resolves when the holder of `token` may use `topic` this way; rejects `unauthorized` (a
   * bad token) or `forbidden` (no topic rule allows it). Without auth on the node, tokens are
   * not checked.
   */
  async topic(topic: string, action: TopicAction, token: string): Promise<void> {
    const auth = this.#auth;
    if (!auth) return;
    const caller = await auth.verifier.verify(token);
    const rule = auth.topics.find((r) => patternCovers(r.topic, topic));
    if (!rule || !allows(rule[action] ?? "deny", caller, topic)) {
      throw new ForbiddenError(`Caller "${caller.sub}" may not ${action} "${topic}"`);
    }
  }

  /**
   * Which rule decides a call to `def.handler` by the holder of `token` (none: anonymous), as
   * {@link call} would decide it. Rejects `unauthorized` for a bad token.
   */
  async explain(
    def: ActorDefinition<AnyActorTypes>,
    handler: string,
    options: { id?: string; token?: string },
  ): Promise<Decision> {
    const auth = this.#auth;
    if (!auth) return { allowed: true, by: "no auth on this node" };
    const caller = options.token === undefined
      ? undefined
      : await auth.verifier.verify(options.token);
    return decide(def.name, handler, options.id ?? "", caller, def.access, auth.rules);
  }
}
