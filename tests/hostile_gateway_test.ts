/**
 * Hostile traffic against a real gateway over real HTTP on loopback: the server is a child
 * process (tests/hostile_server.ts), so its memory (`VmRSS`) and its log (stderr) are its own.
 * Each test is an attack of issue 14 ("untrusted edges") and asserts what the server answers
 * and that its memory stays bounded. The NATS side is in hostile_nats_test.ts.
 */
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { type NodeProcess, startNodeProcess } from "../adapters/testing/mod.ts";
import { waitFor, within } from "./helpers.ts";

const KIB = 1024;
const MIB = 1024 * 1024;

interface Target extends AsyncDisposable {
  proc: NodeProcess;
  port: number;
  base: string;
  api: string;
  /** The server's resident memory, MiB. */
  rss(): number;
  /** What the server's actors saw. */
  stats(): Promise<{ ran: number; produced: number; open: number; taken: number }>;
}

/** Starts tests/hostile_server.ts with these gateway options (and node auth, when given). */
async function target(gateway: object = {}, auth?: object): Promise<Target> {
  const proc = await startNodeProcess({
    script: new URL("./hostile_server.ts", import.meta.url),
    env: {
      TROUPE_GATEWAY: JSON.stringify(gateway),
      ...(auth ? { TROUPE_AUTH: JSON.stringify(auth) } : {}),
    },
  });
  const port = proc.info.port as number;
  const base = `http://127.0.0.1:${port}`;
  return {
    proc,
    port,
    base,
    api: `${base}/api`,
    rss() {
      const status = Deno.readTextFileSync(`/proc/${proc.pid}/status`);
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
    },
    async stats() {
      return await (await fetch(`${base}/stats`)).json();
    },
    // Deno keeps the task of a WebSocket whose client hung up without a close frame alive for
    // ~14 s after its close event (seen with a bare Deno.serve too): do not wait for that
    [Symbol.asyncDispose]: () => proc.stop(2_000),
  };
}

/** A raw TCP connection: what it sends is up to the test, and it reads only when asked. */
class Raw {
  text = "";
  readonly #chunks: Uint8Array[] = [];
  #closed = false;
  private constructor(readonly conn: Deno.Conn) {}

  static async open(port: number): Promise<Raw> {
    return new Raw(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    for (let at = 0; at < bytes.length;) at += await this.conn.write(bytes.subarray(at));
  }

  /** The read in progress: kept when a wait gives up, so that no bytes are lost. */
  #pending: Promise<number | null> | undefined;
  readonly #buf = new Uint8Array(64 * KIB);

  /** Reads until the text so far matches `re` (or the server closes); bounded by `ms`. */
  async until(re: RegExp, ms: number): Promise<string> {
    const end = performance.now() + ms;
    while (!re.test(this.text) && !this.#closed) {
      const left = end - performance.now();
      if (left <= 0) throw new Error(`No ${re} within ${ms} ms; got ${this.text.slice(0, 200)}`);
      this.#pending ??= this.conn.read(this.#buf).catch(() => null);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.#pending,
        new Promise<"late">((r) => timer = setTimeout(() => r("late"), left)),
      ]).finally(() => clearTimeout(timer));
      if (n === "late") continue;
      this.#pending = undefined;
      if (n === null) {
        this.#closed = true;
        break;
      }
      this.#chunks.push(this.#buf.slice(0, n));
      this.text += new TextDecoder().decode(this.#buf.subarray(0, n));
    }
    if (!re.test(this.text)) throw new Error(`Closed before ${re}; got ${this.text.slice(0, 200)}`);
    return this.text;
  }

  /** The close code of the WebSocket close frame read so far, if any (after the 101 head). */
  wsClose(): number | undefined {
    const head = this.text.indexOf("\r\n\r\n") + 4; // the response head is ASCII
    return head < 4 ? undefined : closeCode(this.bytes().subarray(head));
  }

  /** Every byte read so far. */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.#chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  /** Whether the server closed the connection (seen by reading until EOF, bounded). */
  async closedBy(ms: number): Promise<boolean> {
    try {
      await this.until(/(?!)/, ms);
    } catch {
      // no match ever: the question is only whether it ended
    }
    return this.#closed;
  }

  close(): void {
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // closed already
    }
  }
}

/** The request line and headers of a WebSocket upgrade. */
function upgrade(path: string, port: number, origin?: string): string {
  return `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nupgrade: websocket\r\n` +
    "connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
    `sec-websocket-version: 13\r\n${origin ? `origin: ${origin}\r\n` : ""}\r\n`;
}

/** A masked client text frame (RFC 6455). */
function textFrame(text: string): Uint8Array {
  const payload = new TextEncoder().encode(text);
  const n = payload.length;
  const head = n < 126
    ? [0x81, 0x80 | n]
    : n < 65536
    ? [0x81, 0x80 | 126, n >> 8, n & 255]
    : [0x81, 0x80 | 127, 0, 0, 0, 0, n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255];
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const out = new Uint8Array(head.length + 4 + n);
  out.set(head);
  out.set(mask, head.length);
  for (let i = 0; i < n; i++) out[head.length + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

/** The close code of the first close frame among a server's (unmasked) frames, if any. */
function closeCode(bytes: Uint8Array): number | undefined {
  let at = 0;
  while (at + 2 <= bytes.length) {
    const op = bytes[at]! & 0x0f;
    let n = bytes[at + 1]! & 0x7f;
    let start = at + 2;
    if (n === 126) [n, start] = [(bytes[at + 2]! << 8) | bytes[at + 3]!, at + 4];
    else if (n === 127) {
      n = Number(new DataView(bytes.buffer, bytes.byteOffset + at + 2, 8).getBigUint64(0));
      start = at + 10;
    }
    if (op === 8) return n >= 2 ? (bytes[start]! << 8) | bytes[start + 1]! : 1005;
    at = start + n;
  }
  return undefined;
}

/** Opens a WebSocket (Deno's client) and resolves once open; `closed` gives the close event. */
async function socket(url: string): Promise<{ ws: WebSocket; closed: Promise<CloseEvent> }> {
  const ws = new WebSocket(url);
  const closed = new Promise<CloseEvent>((r) => ws.addEventListener("close", r));
  await within(
    new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`WebSocket ${url} failed`));
    }),
    5_000,
    "the socket to open",
  );
  return { ws, closed };
}

const json = { "content-type": "application/json" };

Deno.test("hostile: slow bodies end with 408 within bodyTimeout; aborted ones log no stacks and free their places", async () => {
  await using t = await target({ limits: { bodyTimeout: 1_000, maxConnections: 40 } });
  const linesBefore = t.proc.stderr().length;
  // 40 clients that send a byte every 200 ms of a body of 100 bytes
  const slow = await Promise.all(Array.from({ length: 40 }, () => Raw.open(t.port)));
  const dripping = slow.map(async (c) => {
    await c.send(
      "POST /api/target/s/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n" +
        'content-length: 100\r\n\r\n"',
    );
    for (let i = 0; i < 30 && !c.text; i++) {
      await new Promise((r) => setTimeout(r, 200));
      await c.send("x").catch(() => {});
    }
  });
  // while they hold every place, a 41st request is refused at once
  await waitFor(
    async () => {
      const r = await fetch(`${t.api}/target/a/echo`, { method: "POST", headers: json, body: "1" });
      await r.body?.cancel();
      return r.status === 429;
    },
    5_000,
    "the 41st request to be refused with 429",
  );
  const started = performance.now();
  const answers = await Promise.all(slow.map((c) => c.until(/\r\n\r\n.*"code":"timeout"/s, 5_000)));
  for (const a of answers) assert.match(a, /^HTTP\/1\.1 408 /);
  assert.ok(performance.now() - started < 3_000, "all within bodyTimeout and a little");
  for (const c of slow) c.close();
  await Promise.all(dripping);
  // 40 clients that send half a body and hang up
  const cut = await Promise.all(Array.from({ length: 40 }, () => Raw.open(t.port)));
  for (const c of cut) {
    await c.send(
      "POST /api/target/s/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n" +
        'content-length: 100\r\n\r\n"xxxx',
    );
  }
  for (const c of cut) c.close();
  // every place is free again once the server saw all 80 go: a request runs
  await waitFor(
    async () => {
      const r = await fetch(`${t.api}/target/a/echo`, { method: "POST", headers: json, body: "2" });
      await r.body?.cancel();
      return r.status === 200;
    },
    5_000,
    "a request to run after the attack",
  );
  const lines = t.proc.stderr().slice(linesBefore);
  assert.ok(lines.length <= 80, `at most a line per request, got ${lines.length}`);
  assert.deepEqual(lines.filter((l) => /^\s+at /.test(l)), [], "no stack traces");
  assert.equal((await t.stats()).ran, 1, "no slow or cut body reached a handler");
});

Deno.test("hostile: idle and half-sent connections cost Deno.serve ~12 KB each and do not stop the gateway", async () => {
  await using t = await target();
  await (await fetch(`${t.api}/target/w/echo`, { method: "POST", headers: json, body: "0" }))
    .text();
  const before = t.rss();
  const conns = await Promise.all(Array.from({ length: 1_000 }, () => Raw.open(t.port)));
  try {
    for (const [i, c] of conns.entries()) if (i % 2) await c.send("GET / HTTP/1.1\r\nhost: x\r\n");
    const r = await fetch(`${t.api}/target/a/echo`, { method: "POST", headers: json, body: "5" });
    assert.equal(await r.json(), 5);
    const grown = t.rss() - before;
    assert.ok(grown < 1_000 * 32 / 1024, `1000 connections grew the server by ${grown} MiB`);
  } finally {
    for (const c of conns) c.close();
  }
});

Deno.test("hostile: streams per address, then in all, are capped (429), and a closed one frees its place", async () => {
  await using t = await target({ limits: { maxStreamsPerCaller: 4, maxStreams: 6 } });
  const open = async (id: string) => {
    const c = await Raw.open(t.port);
    await c.send(
      `GET /api/target/${id}/hold HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n`,
    );
    return c;
  };
  const first = await Promise.all([1, 2, 3, 4].map((i) => open(`h${i}`)));
  for (const c of first) await c.until(/^HTTP\/1\.1 200 [^]*data: 0/, 5_000);
  const fifth = await open("h5");
  await fifth.until(/"code":"rate_limited"/, 5_000);
  assert.match(fifth.text, /^HTTP\/1\.1 429 /);
  fifth.close();
  // one closes: its place is free again once the server saw it go
  first[0]!.close();
  await waitFor(async () => (await t.stats()).open === 3, 5_000, "the stream to be cancelled");
  const again = await open("h6");
  await again.until(/^HTTP\/1\.1 200 /, 5_000);
  for (const c of [...first, again]) c.close();
  await waitFor(async () => (await t.stats()).open === 0, 5_000, "every stream to end");
});

Deno.test("hostile: streams per verified caller, and in all (maxStreams), with tokens", async () => {
  const auth = {
    secret: "a-shared-secret-of-at-least-thirty-two-bytes",
    algorithms: ["HS256"],
    issuer: "https://idp.test/",
    audience: "troupe",
  };
  await using t = await target({ limits: { maxStreamsPerCaller: 2, maxStreams: 3 } }, auth);
  const token = (sub: string) =>
    new SignJWT({ sub }).setProtectedHeader({ alg: "HS256" }).setIssuer(auth.issuer)
      .setAudience(auth.audience).setIssuedAt().setExpirationTime("10m")
      .sign(new TextEncoder().encode(auth.secret));
  const [alice, bob] = [await token("alice"), await token("bob")];
  let n = 0;
  const open = async (jwt: string) => {
    const c = await Raw.open(t.port);
    await c.send(
      `GET /api/target/x${n++}/hold HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n` +
        `authorization: Bearer ${jwt}\r\n\r\n`,
    );
    return c;
  };
  const conns: Raw[] = [];
  try {
    for (const jwt of [alice, alice]) {
      conns.push(await open(jwt));
      await conns.at(-1)!.until(/^HTTP\/1\.1 200 [^]*data: 0/, 5_000);
    }
    conns.push(await open(alice));
    await conns.at(-1)!.until(/"code":"rate_limited"/, 5_000); // alice's third
    conns.push(await open(bob));
    await conns.at(-1)!.until(/^HTTP\/1\.1 200 [^]*data: 0/, 5_000); // bob is not alice
    conns.push(await open(bob));
    await conns.at(-1)!.until(/"code":"overloaded"/, 5_000); // 3 in all
    assert.match(conns.at(-1)!.text, /^HTTP\/1\.1 429 [^]*retry-after: 1/i);
  } finally {
    for (const c of conns) c.close();
  }
});

Deno.test("hostile: a WebSocket from a foreign Origin is refused (403) before the upgrade", async () => {
  await using t = await target();
  const ask = async (origin?: string) => {
    const c = await Raw.open(t.port);
    try {
      await c.send(upgrade("/api/target/o/hold", t.port, origin));
      return (await c.until(/^HTTP\/1\.1 \d+ [^]*\r\n\r\n/, 5_000)).slice(9, 12);
    } finally {
      c.close();
    }
  };
  assert.equal(await ask("https://evil.example"), "403");
  assert.equal(await ask(`http://127.0.0.1:${t.port}`), "101"); // its own origin
  assert.equal(await ask(), "101"); // no Origin: not a browser
  await using listed = await target({ origins: ["https://app.example"] });
  const c = await Raw.open(listed.port);
  await c.send(upgrade("/api/target/o/hold", listed.port, "https://app.example"));
  await c.until(/^HTTP\/1\.1 101 /, 5_000);
  c.close();
  const evil = await Raw.open(listed.port);
  await evil.send(upgrade("/api/target/o/hold", listed.port, `http://127.0.0.1:${listed.port}`));
  await evil.until(/^HTTP\/1\.1 403 [^]*"code":"forbidden"/, 5_000);
  evil.close();
  // the CORS origins are the default
  await using cors = await target({ cors: { origin: ["https://app.example"] } });
  const viaCors = await Raw.open(cors.port);
  await viaCors.send(upgrade("/api/target/o/hold", cors.port, "https://evil.example"));
  await viaCors.until(/^HTTP\/1\.1 403 /, 5_000);
  viaCors.close();
});

Deno.test("hostile: WebSocket frames over maxFrame close with 1009; unread input past maxBuffered with 1008", async () => {
  await using t = await target({ limits: { maxFrame: 64 * KIB, maxBuffered: 1 * MIB } });
  const ws = `ws://127.0.0.1:${t.port}/api/target`;
  // one frame a little over the limit, and one of 48 MiB
  for (const size of [64 * KIB + 1, 48 * MIB]) {
    const s = await socket(`${ws}/f${size}/slow`);
    s.ws.send(JSON.stringify("x".repeat(size - 2)));
    const e = await within(s.closed, 20_000, "the close");
    assert.equal(e.code, 1009, `a frame of ${size} bytes`);
  }
  // frames of 60 KiB to a handler that takes one a second (raw clients: Deno's own reports
  // close code 0 when the server closes while it is still sending)
  const frame = textFrame(JSON.stringify("y".repeat(60 * KIB)));
  const open = async (id: string) => {
    const c = await Raw.open(t.port);
    await c.send(upgrade(`/api/target/${id}/slow`, t.port));
    await c.until(/^HTTP\/1\.1 101 [^]*\r\n\r\n/, 5_000);
    return c;
  };
  // a client that looks for an answer after each frame: past 1 MiB unread, the server says 1008
  const polite = await open("u1");
  try {
    for (let i = 0; i < 96 && polite.wsClose() === undefined; i++) {
      await polite.send(frame);
      await polite.until(/(?!)/, 100).catch(() => {}); // whatever came within 100 ms
    }
    assert.equal(polite.wsClose(), 1008);
  } finally {
    polite.close();
  }
  // 96 frames (5.6 MiB) sent without a pause: the server cuts the connection early
  const before = t.rss();
  const rude = await open("u2");
  try {
    let sent = 0;
    while (sent < 96 && await rude.send(frame).then(() => true, () => false)) sent++;
    assert.ok(sent < 96 || await rude.closedBy(10_000), "the server cut the connection");
  } finally {
    rude.close();
  }
  assert.ok(t.rss() - before < 32, `unread input grew the server by ${t.rss() - before} MiB`);
  await waitFor(async () => (await t.stats()).open === 0, 5_000, "the handlers to end");
});

Deno.test("hostile: a WebSocket client that reads nothing holds maxBuffered, not the stream (then 1008)", async () => {
  await using t = await target({ limits: { maxBuffered: 1 * MIB, streamStall: 2_000 } });
  await (await fetch(`${t.api}/target/w/echo`, { method: "POST", headers: json, body: "0" }))
    .text();
  const before = t.rss();
  const c = await Raw.open(t.port);
  try {
    await c.send(upgrade("/api/target/r/flood", t.port));
    // never read: the server's sends fill the socket, then it must stop taking items
    await waitFor(async () => (await t.stats()).produced > 0, 5_000, "the stream to start");
    await waitFor(async () => (await t.stats()).open === 0, 15_000, "the stalled socket to close");
    const { produced } = await t.stats();
    assert.ok(produced < 100, `the handler made ${produced} of 400 items of 256 KiB`);
    assert.ok(t.rss() - before < 48, `the server grew by ${t.rss() - before} MiB`);
  } finally {
    c.close();
  }
});

Deno.test("hostile: an SSE client that reads nothing holds one item, not the stream (then it is cut)", async () => {
  await using t = await target({ limits: { streamStall: 2_000 } });
  await (await fetch(`${t.api}/target/w/echo`, { method: "POST", headers: json, body: "0" }))
    .text();
  const before = t.rss();
  const c = await Raw.open(t.port);
  try {
    await c.send(
      "POST /api/target/s/big HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n" +
        "content-type: application/json\r\ncontent-length: 3\r\n\r\n400",
    );
    await waitFor(async () => (await t.stats()).produced > 0, 5_000, "the stream to start");
    await waitFor(async () => (await t.stats()).open === 0, 15_000, "the stalled stream to end");
    const { produced } = await t.stats();
    assert.ok(produced < 100, `the handler made ${produced} of 400 items of 256 KiB`);
    assert.ok(t.rss() - before < 48, `the server grew by ${t.rss() - before} MiB`);
  } finally {
    c.close();
  }
});

Deno.test("hostile: a flood from one address gets 429 rate_limited with Retry-After, then is let in again", async () => {
  await using t = await target({ limits: { perIp: { rate: 2, burst: 5 } } });
  const statuses: number[] = [];
  let retryAfter: string | null = null;
  for (let i = 0; i < 20; i++) {
    const r = await fetch(`${t.api}/target/f/echo`, { method: "POST", headers: json, body: "1" });
    statuses.push(r.status);
    if (r.status === 429) {
      retryAfter = r.headers.get("retry-after");
      assert.equal((await r.json()).error.code, "rate_limited");
    } else await r.body?.cancel();
  }
  assert.equal(statuses.filter((s) => s === 200).length, 5, `statuses ${statuses}`);
  assert.ok(Number(retryAfter) >= 1, `Retry-After ${retryAfter}`);
  assert.equal((await t.stats()).ran, 5, "refused calls never reached the actor");
  await waitFor(
    async () => {
      const r = await fetch(`${t.api}/target/f/echo`, { method: "POST", headers: json, body: "1" });
      await r.body?.cancel();
      return r.status === 200;
    },
    1_000 * (Number(retryAfter) + 2),
    "the address to be let in again",
  );
});

Deno.test("hostile: rates per verified caller are their own; bad tokens are charged to their address", async () => {
  const auth = {
    secret: "a-shared-secret-of-at-least-thirty-two-bytes",
    algorithms: ["HS256"],
    issuer: "https://idp.test/",
    audience: "troupe",
  };
  await using t = await target({
    limits: { perCaller: { rate: 1, burst: 3 }, perIp: { rate: 1, burst: 6 } },
  }, auth);
  const token = (sub: string) =>
    new SignJWT({ sub }).setProtectedHeader({ alg: "HS256" }).setIssuer(auth.issuer)
      .setAudience(auth.audience).setIssuedAt().setExpirationTime("10m")
      .sign(new TextEncoder().encode(auth.secret));
  const call = async (jwt: string) => {
    const r = await fetch(`${t.api}/target/c/echo`, {
      method: "POST",
      headers: { ...json, authorization: `Bearer ${jwt}` },
      body: "1",
    });
    await r.body?.cancel();
    return r.status;
  };
  const alice = await token("alice");
  const aliceStatuses = [];
  for (let i = 0; i < 6; i++) aliceStatuses.push(await call(alice));
  assert.deepEqual(aliceStatuses, [200, 200, 200, 429, 429, 429]);
  assert.equal(await call(await token("bob")), 200, "bob has his own bucket");
  // garbage tokens: 401 with WWW-Authenticate while the address has tokens left, then 429
  const garbage = [];
  for (let i = 0; i < 8; i++) garbage.push(await call(`x.y.${i}`));
  assert.deepEqual(garbage.slice(0, 4), [401, 401, 401, 401]);
  assert.ok(garbage.slice(4).every((s) => s === 429), `garbage ${garbage}`);
});
