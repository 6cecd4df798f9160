/**
 * The {@link Executor} of a remote server (sqld, Turso) through `@libsql/client`: its calls are
 * asynchronous and never block the thread. Tests also run it on local files.
 *
 * @module
 */

import type { Client } from "@libsql/client/node";
import type { Executor, Rows } from "./_engine.ts";

function toRows(rs: { rows: ArrayLike<unknown>[] }): Rows {
  return rs.rows.map((r) => Array.from(r));
}

/** A remote database through `@libsql/client` (or a local one, for tests of this path). */
export function clientExecutor(client: Client): Executor {
  return {
    interactive: false,
    async write(stmts) {
      const results = await client.batch(
        stmts.map((s) => ({ sql: s.sql, args: [...s.args] })),
        "write",
      );
      return results.map(toRows);
    },
    async read(stmts) {
      if (stmts.length === 1) {
        const s = stmts[0]!;
        return [toRows(await client.execute({ sql: s.sql, args: [...s.args] }))];
      }
      const results = await client.batch(
        stmts.map((s) => ({ sql: s.sql, args: [...s.args] })),
        "read",
      );
      return results.map(toRows);
    },
    async transaction(fn) {
      const tx = await client.transaction("write");
      try {
        const result = await fn(async (s) =>
          toRows(await tx.execute({ sql: s.sql, args: [...s.args] }))
        );
        await tx.commit();
        return result;
      } finally {
        tx.close();
      }
    },
    close() {
      client.close();
    },
  };
}
