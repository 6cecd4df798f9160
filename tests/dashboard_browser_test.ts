/**
 * The dashboard in a real browser (Debian's headless Chromium driven by `playwright-core`) on
 * a live two-node cluster over a real nats-server: it shows the nodes, types and counts,
 * updates when an actor activates, inspects an actor, and with `auth` shows nothing to an
 * anonymous visitor. Screenshots go to tests/artifacts/.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { createSystem } from "../mod.ts";
import { natsMesh } from "../adapters/nats/mod.ts";
import { dashboard } from "../adapters/hono/mod.ts";
import { startNatsCluster } from "../adapters/testing/mod.ts";
import { issuer } from "./auth_fixtures.ts";
import { Account, Counter, Resize } from "./fixtures.ts";
import { serve } from "./gateway_fixtures.ts";

const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

/** The few parts of playwright-core's API used here. */
interface Page {
  goto(url: string): Promise<unknown>;
  fill(selector: string, value: string): Promise<void>;
  selectOption(selector: string, value: string): Promise<unknown>;
  click(selector: string): Promise<void>;
  waitForSelector(
    selector: string,
    options: { timeout: number; state?: "attached" | "visible" },
  ): Promise<unknown>;
  textContent(selector: string): Promise<string | null>;
  locator(selector: string): { count(): Promise<number> };
  screenshot(options: { path: string; fullPage?: boolean }): Promise<unknown>;
  setViewportSize(size: { width: number; height: number }): Promise<void>;
}
interface Browser {
  newContext(): Promise<{ newPage(): Promise<Page>; close(): Promise<void> }>;
  close(): Promise<void>;
}
interface Playwright {
  chromium: {
    launch(
      options: { executablePath: string; headless: boolean; args: string[]; timeout: number },
    ): Promise<Browser>;
  };
}

async function loadPlaywright(): Promise<Playwright> {
  const name = "playwright-core"; // in a variable: `deno check` does not need the package
  try {
    return await import(name) as Playwright;
  } catch (err) {
    throw new Error(`playwright-core is not installed (${err}): run "npm ci"`);
  }
}

async function launch(): Promise<Browser> {
  try {
    Deno.statSync(CHROMIUM);
  } catch {
    throw new Error(`No Chromium at ${CHROMIUM}: install it with "apt-get install -y chromium"`);
  }
  const { chromium } = await loadPlaywright();
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
    timeout: 30_000,
  });
}

const artifact = async (name: string) => {
  await Deno.mkdir(new URL("./artifacts/", import.meta.url), { recursive: true });
  return new URL(`./artifacts/${name}`, import.meta.url).pathname;
};

const cell = (table: string, row: string, col: string) =>
  `#${table} tr[data-${table === "nodes" ? "node" : "type"}="${row}"] td[data-col="${col}"]`;

Deno.test("dashboard in Chromium: a live cluster's nodes, types and counts, updated as actors activate", async () => {
  await using nats = await startNatsCluster();
  const mesh = () => natsMesh({ servers: nats.urls[0]!, prefix: "dash", leaseTtl: 2000 });
  await using n1 = await createSystem({ node: "n1", actors: [Account], mesh: mesh() });
  await using _n2 = await createSystem({ node: "n2", actors: [Counter, Resize], mesh: mesh() });
  await n1.ref(Account, "alice").ask("deposit", 5);
  await n1.ref(Account, "alice").ask("deposit", 7);
  await assert.rejects(n1.ref(Account, "alice").ask("withdraw", 100), { code: "insufficient" });
  await n1.ref(Resize).ask("where");

  const app = new Hono();
  app.route("/troupe", dashboard(n1, { access: "public", interval: 250 }));
  await using served = serve(app);
  const browser = await launch();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.setViewportSize({ width: 1280, height: 1000 });
    await page.goto(`${served.url}/troupe`);
    await page.waitForSelector("#status.live", { timeout: 10_000 });
    await page.waitForSelector('#nodes tr[data-node="n1"]', { timeout: 10_000 });
    await page.waitForSelector('#nodes tr[data-node="n2"]', { timeout: 10_000 });
    assert.equal(await page.textContent(cell("nodes", "n1", "types")), "account");
    assert.equal(await page.textContent(cell("nodes", "n2", "types")), "counter, resize");
    assert.equal(await page.textContent(cell("nodes", "n1", "status")), "running");
    assert.equal(await page.textContent(cell("types", "account", "activations")), "1");
    assert.equal(await page.textContent(cell("types", "account", "messages")), "3");
    assert.equal(await page.textContent(cell("types", "account", "errors")), "1");
    assert.equal(await page.textContent(cell("types", "resize", "kind")), "worker");
    assert.equal(await page.textContent(cell("types", "counter", "activations")), "0");
    await page.waitForSelector("#errors td.code:text('insufficient')", { timeout: 5_000 });
    assert.ok((await page.locator("#leases tbody tr").count()) >= 1, "the reminder leader's lease");

    // An actor activates on n2: the page follows.
    await n1.ref(Counter, "c1").ask("inc", 1);
    await n1.ref(Counter, "c2").ask("inc", 1);
    await page.waitForSelector(`${cell("types", "counter", "activations")}:text-is("2")`, {
      timeout: 10_000,
    });
    await page.waitForSelector(`${cell("nodes", "n2", "activations")}:text-is("2")`, {
      timeout: 10_000,
    });

    // The inspector: where alice runs, her seq and last events.
    await page.selectOption("#inspect-type", "account");
    await page.fill("#inspect-id", "alice");
    await page.click("#inspect button");
    await page.waitForSelector('#actor dd[data-field="seq"]:text-is("2")', { timeout: 10_000 });
    assert.equal(await page.textContent('#actor dd[data-field="active-on"]'), "n1");
    assert.equal(await page.locator("#events tbody tr").count(), 2);
    assert.match((await page.textContent("#events tbody")) ?? "", /"amount":7/);
    await page.screenshot({ path: await artifact("dashboard.png"), fullPage: true });
  } finally {
    await browser.close();
  }
});

Deno.test("dashboard in Chromium: with auth, an anonymous visitor sees no data", async () => {
  const idp = await issuer();
  await using system = await createSystem({
    node: "secure-1",
    actors: [Account],
    auth: idp.auth,
  });
  const app = new Hono();
  app.route("/troupe", dashboard(system));
  await using served = serve(app);
  const browser = await launch();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${served.url}/troupe/`);
    await page.waitForSelector("#status.denied", { timeout: 10_000 });
    await page.waitForSelector("#auth:not([hidden])", { timeout: 5_000 });
    assert.match((await page.textContent("#auth-reason")) ?? "", /^unauthorized/);
    assert.equal(await page.locator("#nodes tbody tr").count(), 0);
    await page.screenshot({ path: await artifact("dashboard_signin.png") });

    // An admin's token opens it.
    await page.fill("#token", await idp.sign({ sub: "ada", roles: ["admin"] }));
    await page.click("#auth-form button");
    await page.waitForSelector('#nodes tr[data-node="secure-1"]', { timeout: 10_000 });
    await page.waitForSelector("#auth[hidden]", { timeout: 5_000, state: "attached" });
  } finally {
    await browser.close();
  }
});
