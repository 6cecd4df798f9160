/**
 * Set-up checks of a NATS mesh connection, made once before it first uses JetStream: a server
 * without JetStream, or a user whose permissions are not a node's, fails at once with a
 * {@link NatsSetupError} that says what to change, instead of a timeout or a raw permission
 * violation later.
 *
 * @module
 */

import { errors as natsErrors, type NatsConnection } from "@nats-io/nats-core";
import { delay, systemClock } from "../../spi.ts";

/** Why a NATS server cannot serve a Troupe node as it is set up. */
export type NatsSetupReason = "jetstream_missing" | "not_a_node_user" | "jetstream_no_room";

/**
 * The NATS server cannot serve a Troupe node as it is set up: JetStream is not enabled
 * (`reason: "jetstream_missing"`), or the user lacks a node's permissions, such as a client
 * user of `natsAuthConfig()` (`"not_a_node_user"`). `createSystem` fails with it at once.
 * The first durable publish or subscription fails with `"jetstream_no_room"` when the
 * server's JetStream cannot reserve the durable topics' stream (`durableTopics.maxBytes`).
 *
 * @example
 * ```ts
 * import { createSystem } from "@troupe/troupe";
 * import { natsMesh, NatsSetupError } from "@troupe/troupe/nats";
 *
 * try {
 *   const system = await createSystem({ mesh: natsMesh({ servers: "nats://127.0.0.1:4222" }) });
 *   await system.close();
 * } catch (err) {
 *   if (err instanceof NatsSetupError) console.error(err.reason, err.message);
 * }
 * ```
 */
export class NatsSetupError extends Error {
  /** What is wrong. */
  readonly reason: NatsSetupReason;
  /**
   * Makes the error.
   *
   * @param reason What is wrong.
   * @param message What is wrong and how to fix it.
   * @param cause The client's error.
   */
  constructor(reason: NatsSetupReason, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "NatsSetupError";
    this.reason = reason;
  }
}

/** How long a server may answer nothing on `$JS.API` before JetStream counts as missing, ms. */
const JETSTREAM_GRACE = 2_000;

const EMPTY = new Uint8Array(0);

type PermissionViolation = InstanceType<typeof natsErrors.PermissionViolationError>;

function permissionViolation(err: unknown): PermissionViolation | undefined {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (e instanceof natsErrors.PermissionViolationError) return e;
  }
  return undefined;
}

function noResponders(err: unknown): boolean {
  return err instanceof natsErrors.NoRespondersError ||
    (err instanceof natsErrors.RequestError && err.isNoResponders());
}

/**
 * Checks that `nc` may use JetStream as a Troupe node does (`$JS.API.INFO`, answered on the
 * connection's inbox), and throws a {@link NatsSetupError} when JetStream is missing or the
 * user is not allowed to. Anything else (a timeout, a cluster still electing its leader) is
 * left to the callers' own retries.
 */
export async function checkJetStream(
  nc: NatsConnection,
  node: string,
  user: string | undefined,
  timeout: number,
): Promise<void> {
  const who = user === undefined ? "" : ` (NATS user "${user}")`;
  const grace = performance.now() + JETSTREAM_GRACE;
  for (;;) {
    let reply: { error?: { code?: number; err_code?: number; description?: string } };
    try {
      const msg = await nc.request("$JS.API.INFO", EMPTY, { timeout });
      reply = msg.json();
    } catch (err) {
      const denied = permissionViolation(err);
      if (denied) {
        throw new NatsSetupError(
          "not_a_node_user",
          `Node "${node}"${who} may not ${
            denied.operation === "publish" ? "publish to" : "subscribe to"
          } "${denied.subject}": NATS refused it a Troupe node's permissions. ` +
            `A Troupe node, and a Troupe client system ` +
            `(createSystem with natsMesh and no actors), needs a node user: list it under ` +
            `natsAuthConfig({ nodes }). Users under clients are for plain NATS clients that ` +
            `only call actors.`,
          err,
        );
      }
      if (noResponders(err)) {
        if (performance.now() < grace) {
          await delay(systemClock, 200);
          continue;
        }
        throw jetStreamMissing(node, nc, err);
      }
      return; // a timeout, a closed connection…: the callers retry and report those
    }
    const description = reply.error?.description ?? "";
    if (/jetstream not enabled|jetstream is not enabled/i.test(description)) {
      throw jetStreamMissing(node, nc, new Error(description), true);
    }
    return;
  }
}

function jetStreamMissing(
  node: string,
  nc: NatsConnection,
  cause: unknown,
  account = false,
): NatsSetupError {
  const server = nc.getServer();
  return new NatsSetupError(
    "jetstream_missing",
    `Node "${node}" cannot use JetStream on the NATS server at ${server}: ` +
      (account ? "it is not enabled for this user's account. " : "the server has none. ") +
      `Troupe keeps membership, ownership and leases in JetStream KV. Start the server with ` +
      `JetStream: \`nats-server -js -sd <store dir>\`, or \`jetstream { store_dir: "<dir>" }\` ` +
      `in its configuration` +
      (account ? ` (and \`jetstream: enabled\` in the account)` : "") + ".",
    cause,
  );
}
