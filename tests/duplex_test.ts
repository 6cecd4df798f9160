/** Streams both ways on the in-process mesh: one node, and across nodes. */
import { startSystems } from "../adapters/testing/mod.ts";
import { duplexCases, Room } from "./duplex_cases.ts";

Deno.test("streams both ways on one node: duplex, client stream, flow control, cancel, errors", async () => {
  const systems = await startSystems({ actors: [Room], nodes: 1 });
  try {
    await duplexCases(systems.nodes[0]!, `local-${crypto.randomUUID()}`);
  } finally {
    await systems.close();
  }
});

Deno.test("streams both ways across nodes (in-process mesh)", async () => {
  const systems = await startSystems({ actors: [Room], nodes: 2 });
  try {
    await duplexCases(systems.client, `remote-${crypto.randomUUID()}`);
  } finally {
    await systems.close();
  }
});
