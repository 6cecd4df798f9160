/**
 * A guard against late socket errors of `node:net` clients under Deno.
 *
 * @module
 */

const SOCKET_ERRORS = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED"]);
let socketGuard = false;

/**
 * Keeps a late socket error of a `node:net` client from ending the process. The NATS client for
 * Node (the NATS mesh's TCP transport) removes its sockets' `error` listeners for short windows (after it
 * read the server's INFO, and when it discards a socket): a connection reset by a server that
 * dies, or that refuses a login, in such a window surfaces as an uncaught exception that would end
 * the process. Troupe installs one narrow guard: an uncaught error whose code is a socket error
 * and that comes from the runtime's TCP layer is logged (the client sees the closed socket and
 * reconnects) instead of ending the process. Anything else stays uncaught. Idempotent.
 *
 * @example
 * ```ts
 * import { installSocketGuard } from "@troupe/troupe/spi";
 * installSocketGuard(); // before opening node:net clients whose servers may die under them
 * ```
 */
export function installSocketGuard(): void {
  if (socketGuard || typeof globalThis.addEventListener !== "function") return;
  socketGuard = true;
  globalThis.addEventListener("error", (event) => {
    const err = (event as ErrorEvent).error as { code?: unknown; stack?: unknown } | undefined;
    if (
      err && typeof err.code === "string" && SOCKET_ERRORS.has(err.code) &&
      typeof err.stack === "string" && /TCPWrap|stream_base_commons|net\./.test(err.stack)
    ) {
      event.preventDefault();
      console.warn(`troupe: ignored a late socket error (${err.code})`);
    }
  });
}
