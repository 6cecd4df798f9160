/**
 * kill -9 of a node while many actors and one hot actor write to a libSQL file: every
 * acknowledged event is in the log, and every event in the log belongs to a whole turn.
 */
import assert from "node:assert/strict";
import { libsqlJournal } from "../adapters/libsql/mod.ts";
import { msgpack } from "../src/codec/mod.ts";

Deno.test("kill -9 while many actors and one hot actor write: every acknowledged event is in the log, no turn is half there", async () => {
  const dir = await Deno.makeTempDir({ prefix: "troupe-crash-" });
  const url = `file:${dir}/crash.db`;
  const actors = 200;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      new URL("./nodes/crash_writer.ts", import.meta.url).pathname,
      url,
      String(actors),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const acked = new Map<string, Set<number>>();
  let total = 0;
  let hot = 0;
  // Bounded: killed after 60 s whatever it printed.
  const bound = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    // Enough acknowledged writes, from both kinds of writers, then kill -9 mid-flight.
    while (total < 4000 || hot < 400) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the writer exited early after ${total} acknowledgements`);
      buf += value;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) {
        const m = /^ACK (\S+) (\d+)$/.exec(line);
        if (!m) continue;
        const set = acked.get(m[1]!) ?? new Set();
        set.add(Number(m[2]));
        acked.set(m[1]!, set);
        total++;
        if (m[1] === "hot") hot++;
      }
    }
    child.kill("SIGKILL");
    await reader.cancel().catch(() => {});
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL");
  } finally {
    clearTimeout(bound);
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
    await child.status;
  }

  const journal = libsqlJournal({ url });
  try {
    let logged = 0;
    for (const id of [...Array.from({ length: actors }, (_, i) => `a${i}`), "hot"]) {
      const values = new Map<number, number[]>();
      let seq = 0;
      for (let from = 1;; from += 1000) {
        const page = await journal.read(`pair/${id}`, from, 1000);
        for (const e of page) {
          assert.equal(e.seq, ++seq, `pair/${id}: seqs without gaps`);
          const { value, part } = msgpack.decode(e.data) as { value: number; part: number };
          const parts = values.get(value) ?? [];
          parts.push(part);
          values.set(value, parts);
        }
        if (page.length < 1000) break;
      }
      logged += seq;
      // Every turn in the log is whole: both of its events, once, in order.
      for (const [value, parts] of values) {
        assert.deepEqual(parts, [1, 2], `pair/${id}: value ${value} is a whole turn`);
      }
      // Every acknowledged turn is in the log.
      for (const value of acked.get(id) ?? []) {
        assert.ok(values.has(value), `pair/${id}: acknowledged value ${value} is in the log`);
      }
    }
    assert.ok(logged >= 2 * total, `${logged} events logged for ${total} acknowledged turns`);
    console.log(`${total} acknowledged turns (${hot} of the hot actor), ${logged} events logged`);
  } finally {
    await journal.close();
    await Deno.remove(dir, { recursive: true });
  }
});
