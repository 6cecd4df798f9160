/**
 * The container image, without Docker (no daemon here): the Dockerfile's ENTRYPOINT (the
 * gateway) and HEALTHCHECK commands, and compose.yaml's node command, run directly from the
 * repository root (the image's WORKDIR holds the same files), against a loopback NATS server.
 * What differs from the container: `deno` is this Deno, the node's `/data` is a temp dir,
 * and the gateway listens on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { within } from "./helpers.ts";

const root = new URL("../", import.meta.url).pathname;

/** The JSON-array form of a Dockerfile instruction (line continuations joined). */
function instruction(dockerfile: string, name: string): string[] {
  const joined = dockerfile.replace(/\\\n\s*/g, " ");
  const line = joined.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `the Dockerfile has ${name}`);
  const json = line.slice(line.indexOf("["));
  return JSON.parse(json) as string[];
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

interface Proc {
  child: Deno.ChildProcess;
  out: string[];
  err: string[];
  reading: Promise<unknown>;
}

function run(argv: string[], env: Record<string, string>): Proc {
  assert.equal(argv[0], "deno", "the command runs deno");
  const child = new Deno.Command(Deno.execPath(), {
    args: argv.slice(1),
    cwd: root,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: string[] = [];
  const err: string[] = [];
  const collect = async (s: ReadableStream<Uint8Array>, into: string[]) => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) into.push(chunk);
  };
  return {
    child,
    out,
    err,
    reading: Promise.all([collect(child.stdout, out), collect(child.stderr, err)]),
  };
}

async function untilReady(p: Proc, what: string): Promise<void> {
  await within(
    (async () => {
      while (!p.out.join("").includes("READY")) await new Promise((r) => setTimeout(r, 50));
    })(),
    30_000,
    what,
  ).catch((e) => {
    throw new Error(`${e}\nstdout: ${p.out.join("")}\nstderr: ${p.err.join("")}`);
  });
}

async function stop(p: Proc): Promise<Deno.CommandStatus> {
  try {
    p.child.kill("SIGTERM");
  } catch {
    // exited
  }
  const status = await within(p.child.status, 10_000, "the process to stop").catch(async (e) => {
    p.child.kill("SIGKILL");
    await p.child.status;
    throw e;
  });
  await p.reading.catch(() => {});
  return status;
}

Deno.test("container: the image's entrypoint serves the gateway, its healthcheck sees it, a node from compose.yaml hosts the actors", async () => {
  const dockerfile = await Deno.readTextFile(`${root}Dockerfile`);
  const compose = await Deno.readTextFile(`${root}compose.yaml`);
  const entrypoint = instruction(dockerfile, "ENTRYPOINT");
  const health = instruction(dockerfile, "HEALTHCHECK");
  assert.deepEqual(entrypoint.slice(0, 4), ["deno", "run", "--allow-net", "--allow-env"]);
  assert.ok(
    !entrypoint.some((a) => /^--allow-(read|write|run|ffi|all)|^-A$/.test(a)),
    "the gateway needs only net and env",
  );
  assert.match(dockerfile, /^USER deno$/m);
  // a YAML flow sequence of JSON strings (deno fmt spreads it over lines, trailing comma)
  const nodeLine = /^\s*entrypoint: (\[[^\]]*\])/m.exec(compose);
  assert.ok(nodeLine, "compose.yaml has the node's entrypoint");
  const data = await Deno.makeTempDir({ prefix: "troupe-container-" });
  const nodeCmd = (JSON.parse(nodeLine[1]!.replace(/,\s*\]$/, "]")) as string[]).map((a) =>
    a.replace("/data", data)
  );

  await using nats = await startNatsCluster({ servers: 1, websocket: true });
  const prefix = "troupe"; // what the images use
  const node = run(nodeCmd, {
    TROUPE_SERVERS: nats.urls[0]!,
    TROUPE_JOURNAL: `file:${data}/troupe.db`,
    TROUPE_NODE: "node-1",
    TROUPE_LEASE_TTL: "3000",
  });
  const port = freePort();
  let gateway: Proc | undefined;
  try {
    await untilReady(node, "the node to start");
    // the healthcheck fails while nothing serves
    const check = (env: Record<string, string>) =>
      new Deno.Command(Deno.execPath(), {
        args: health.slice(1),
        cwd: root,
        env,
        stdout: "null",
        stderr: "null",
      })
        .output();
    assert.equal((await within(check({ PORT: String(port) }), 10_000, "the healthcheck")).code, 1);

    gateway = run(entrypoint, {
      NATS_URL: nats.wsUrls[0]!,
      TROUPE_PREFIX: prefix,
      HOSTNAME: "127.0.0.1",
      PORT: String(port),
    });
    await untilReady(gateway, "the gateway to start");
    assert.equal((await within(check({ PORT: String(port) }), 10_000, "the healthcheck")).code, 0);

    const base = `http://127.0.0.1:${port}`;
    await within(
      (async () => {
        while (
          (await fetch(`${base}/readyz`).then((r) => r.body?.cancel().then(() => r.status))) !== 200
        ) {
          await new Promise((r) => setTimeout(r, 100));
        }
      })(),
      20_000,
      "the gateway to be ready",
    );
    const res = await fetch(`${base}/account/alice/deposit`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ amount: 5 }),
    });
    assert.equal(res.status, 200, `stderr: ${gateway.err.join("")} ${node.err.join("")}`);
    assert.equal(await res.json(), 5);

    assert.equal((await stop(gateway)).code, 0);
    gateway = undefined;
    assert.equal((await stop(node)).code, 0);
  } finally {
    if (gateway) await stop(gateway).catch(() => {});
    await stop(node).catch(() => {});
    await Deno.remove(data, { recursive: true }).catch(() => {});
  }
});
