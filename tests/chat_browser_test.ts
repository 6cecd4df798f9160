/**
 * The chat example in a real browser: Debian's headless Chromium driven by `playwright-core`.
 * Two pages (separate browser contexts: two users) open one room; one types, the other
 * shows it, and the other way round. A screenshot is saved to tests/artifacts/chat.png.
 */
import assert from "node:assert/strict";
import { createSystem } from "../mod.ts";
import { Room } from "../examples/chat/actors.ts";
import { chatApp } from "../examples/chat/app.ts";
import { serve } from "./gateway_fixtures.ts";

const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

/** The few parts of playwright-core's API used here. */
interface Page {
  goto(url: string): Promise<unknown>;
  fill(selector: string, value: string): Promise<void>;
  press(selector: string, key: string): Promise<void>;
  waitForSelector(selector: string, options: { timeout: number }): Promise<unknown>;
  textContent(selector: string): Promise<string | null>;
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
  // a specifier in a variable: `deno check` does not need the package to be installed
  const name = "playwright-core";
  try {
    return await import(name) as Playwright;
  } catch (err) {
    throw new Error(
      `playwright-core is not installed (${err}): run "npm ci" (it is a devDependency)`,
    );
  }
}

Deno.test({
  name: "chat: two browser pages in one room see each other's messages live",
  async fn() {
    try {
      Deno.statSync(CHROMIUM);
    } catch {
      throw new Error(
        `No Chromium at ${CHROMIUM}: install it with "apt-get install -y chromium" (scripts/test.sh does)`,
      );
    }
    const { chromium } = await loadPlaywright();
    const system = await createSystem({ actors: [Room], logger: "error" });
    const drain = new AbortController();
    const served = serve(chatApp(system, drain.signal));
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
      timeout: 30_000,
    });
    try {
      const a = await (await browser.newContext()).newPage();
      const b = await (await browser.newContext()).newPage();
      await b.setViewportSize({ width: 800, height: 500 });
      await a.goto(`${served.url}/?room=test&name=alice`);
      await b.goto(`${served.url}/?room=test&name=bob`);
      await a.waitForSelector("#status:text('live')", { timeout: 10_000 });
      await b.waitForSelector("#status:text('live')", { timeout: 10_000 });

      await a.fill("#text", "hello from alice");
      await a.press("#text", "Enter");
      await b.waitForSelector("#log li:has-text('hello from alice')", { timeout: 10_000 });

      await b.fill("#text", "hi alice, bob here");
      await b.press("#text", "Enter");
      await a.waitForSelector("#log li:has-text('hi alice, bob here')", { timeout: 10_000 });
      await b.waitForSelector("#log li.mine:has-text('hi alice, bob here')", { timeout: 10_000 });

      assert.match((await b.textContent("#log")) ?? "", /alice\s*hello from alice/);
      assert.match((await a.textContent("#log")) ?? "", /bob\s*hi alice, bob here/);
      await Deno.mkdir(new URL("./artifacts/", import.meta.url), { recursive: true });
      await b.screenshot({ path: new URL("./artifacts/chat.png", import.meta.url).pathname });
      // the room kept both, for pages that open later
      assert.deepEqual(
        (await system.ref(Room, "test").ask("recent")).map((m) => m.text),
        ["hello from alice", "hi alice, bob here"],
      );
    } finally {
      await browser.close();
      drain.abort();
      await served.close();
      await system.close();
    }
  },
});
