/**
 * Repeating reminders: cron expressions, parsed by croner (a well-kept library; five or six
 * fields, `@hourly` and friends, evaluated in UTC), and the ids of named reminders.
 *
 * @module
 */

import { Cron } from "croner";

/** Longest cron expression accepted, in characters. */
const MAX_CRON_LENGTH = 256;

/**
 * The first time after `after` (ms since the epoch) that `expression` names, in ms since the
 * epoch. Throws `TypeError` for an expression croner cannot read or that names no future time.
 *
 * @example
 * ```ts
 * import { nextCronRun } from "./cron.ts";
 * const at = nextCronRun("*\/5 * * * *", Date.parse("2026-01-01T00:03:00Z"));
 * console.log(new Date(at).toISOString()); // 2026-01-01T00:05:00.000Z
 * ```
 */
export function nextCronRun(expression: string, after: number): number {
  if (typeof expression !== "string" || expression.length > MAX_CRON_LENGTH) {
    throw new TypeError(`A cron expression is a string of at most ${MAX_CRON_LENGTH} characters`);
  }
  let next: Date | null;
  try {
    next = new Cron(expression, { timezone: "UTC", paused: true }).nextRun(new Date(after));
  } catch (err) {
    throw new TypeError(`"${expression}" is not a cron expression: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (next === null) throw new TypeError(`Cron expression "${expression}" names no future time`);
  return next.getTime();
}

/**
 * The id of actor `actor`'s reminder named `name`: the same for every scheduling of that name,
 * so a new one replaces the stored one.
 *
 * @example
 * ```ts
 * import { namedReminderId } from "./cron.ts";
 * console.log(namedReminderId("account/alice", "statement")); // "account/alice#statement"
 * ```
 */
export function namedReminderId(actor: string, name: string): string {
  return `${actor}#${name}`;
}
