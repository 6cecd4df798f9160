/**
 * Auth on vs off: the same remote ask (64-byte payload, 64 in flight) to a node in another
 * process with `auth` on (every call carries an HS256 JWT, verified by the host, cached until
 * it expires) and to a node with auth off, alternating rounds in one run.
 * `deno run -A bench/auth.ts`.
 *
 * @module
 */
import { SignJWT } from "jose";
import { createSystem } from "../mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { BenchEcho } from "./actors.ts";
import { pct, spawnNode, throughput } from "./nats.ts";

const PAYLOAD = new Uint8Array(64).fill(7);
const SECRET = "bench secret of at least thirty-two bytes";

/** Remote ask throughput with auth off and on; the ratio on/off. */
export async function benchAuth(seconds = 3): Promise<Record<string, number>> {
  await using cluster = await startNatsCluster({ servers: 1 });
  const url = cluster.urls[0]!;
  const base = { TROUPE_SERVERS: url, TROUPE_LEASE_TTL: "5000" };
  const off = spawnNode({ ...base, TROUPE_PREFIX: "off", TROUPE_NODE: "host-off" });
  const on = spawnNode({
    ...base,
    TROUPE_PREFIX: "on",
    TROUPE_NODE: "host-on",
    TROUPE_AUTH_SECRET: SECRET,
  });
  await Promise.all([off.ready, on.ready]);
  const cOff = await createSystem({ mesh: natsMesh({ servers: url, prefix: "off" }) });
  const cOn = await createSystem({ mesh: natsMesh({ servers: url, prefix: "on" }) });
  try {
    const token = await new SignJWT({ sub: "bench" }).setProtectedHeader({ alg: "HS256" })
      .setIssuer("bench").setAudience("troupe").setExpirationTime("1h")
      .sign(new TextEncoder().encode(SECRET));
    const refOff = cOff.ref(BenchEcho, "warm");
    const refOn = cOn.ref(BenchEcho, "warm", { token });
    const askOff = () => refOff.ask("ping", PAYLOAD, { timeout: 5000 });
    const askOn = () => refOn.ask("ping", PAYLOAD, { timeout: 5000 });
    for (let i = 0; i < 300; i++) await Promise.all([askOff(), askOn()]);
    const offRuns: number[] = [];
    const onRuns: number[] = [];
    for (let round = 0; round < 3; round++) {
      offRuns.push(await throughput(askOff, seconds / 2));
      onRuns.push(await throughput(askOn, seconds / 2));
    }
    const offPerSec = pct(offRuns, 0.5);
    const onPerSec = pct(onRuns, 0.5);
    return { offPerSec, onPerSec, ratio: onPerSec / offPerSec };
  } finally {
    await cOff.close();
    await cOn.close();
    await Promise.all([off.stop(), on.stop()]);
  }
}

if (import.meta.main) {
  const r = await benchAuth();
  const f = (n: number) => Math.round(n).toLocaleString("en");
  console.log(
    `remote ask, 64 in flight: auth on ${f(r.onPerSec!)}/s vs off ${f(r.offPerSec!)}/s → ratio ${
      r.ratio!.toFixed(2)
    } (goal ≥ 0.9)`,
  );
}
