import assert from "node:assert/strict";
import { createSystem } from "../mod.ts";
import { Account } from "./fixtures.ts";

Deno.test("a journal URL persists events in a libSQL file across systems", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const url = `file:${dir}/t.db`;
    let system = await createSystem({ actors: [Account], journal: url });
    for (let i = 0; i < 15; i++) await system.ref(Account, "p").ask("deposit", 2);
    await system.close();
    system = await createSystem({ actors: [Account], journal: url });
    assert.equal(await system.ref(Account, "p").ask("balance"), 30);
    let n = 0;
    for await (const _ of system.history(Account, "p", { from: 11 })) n++;
    assert.equal(n, 5);
    await system.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function chattr(flag: "+i" | "-i", path: string): Promise<boolean> {
  const out = await new Deno.Command("chattr", { args: [flag, path], stderr: "null" }).output()
    .catch(() => undefined);
  return out?.success ?? false;
}

Deno.test("a read-only journal file gives a clear error and the node keeps running", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/ro.db`;
  try {
    const url = `file:${path}`;
    let system = await createSystem({ actors: [Account], journal: url });
    await system.ref(Account, "r").ask("deposit", 1);
    await system.close();
    // root ignores file modes; an immutable file is read-only even for root
    if (!(await chattr("+i", path))) {
      console.warn("chattr is not available here: skipping the read-only check");
      return;
    }
    system = await createSystem({ actors: [Account], journal: url, logger: "silent" });
    try {
      const err = await system.ref(Account, "r").ask("deposit", 1).then(
        () => undefined,
        (e) => e,
      );
      assert.ok(err, "the write is refused");
      assert.equal(err.code, "unavailable");
      assert.match(err.message, /journal|read-only|cannot/i);
    } finally {
      await system.close().catch(() => {});
    }
  } finally {
    await chattr("-i", path);
    await Deno.remove(dir, { recursive: true });
  }
});
