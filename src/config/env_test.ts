import assert from "node:assert/strict";
import { fromEnv, parseEnv } from "./env.ts";
import { createConfig } from "./config.ts";

Deno.test("parseEnv() nests on __, camel-cases on _, parses JSON values", () => {
  const doc = parseEnv("APP_", {
    APP_LIMITS__MAX_TRANSFER: "500",
    APP_FEATURE__BETA_USERS: '["a","b"]',
    APP_DEBUG: "true",
    APP_NAME: "shop",
    APP_DB__URL: "postgres://x/y", // not JSON: kept as a string
    APP_DB__POOL: '{"max":5}',
    OTHER_THING: "1",
    APP_: "ignored: nothing after the prefix",
  });
  assert.deepEqual(doc, {
    limits: { maxTransfer: 500 },
    feature: { betaUsers: ["a", "b"] },
    debug: true,
    name: "shop",
    db: { url: "postgres://x/y", pool: { max: 5 } },
  });
});

Deno.test("parseEnv() lets a deeper variable refine a shallower one", () => {
  const doc = parseEnv("APP_", { APP_DB__HOST: "h", APP_DB: '{"host":"x","port":5432}' });
  assert.deepEqual(doc, { db: { host: "h", port: 5432 } });
});

Deno.test("fromEnv() reads the environment once, at start", async () => {
  const env: Record<string, string> = { APP_LIMITS__MAX_TRANSFER: "500" };
  await using config = await createConfig({ sources: [fromEnv("APP_", { env })] });
  assert.equal(config.get("limits.maxTransfer", 0), 500);
  env.APP_LIMITS__MAX_TRANSFER = "7";
  assert.equal(config.get("limits.maxTransfer", 0), 500);
  assert.deepEqual(config.health(), [{
    source: "env:APP_",
    ok: true,
    updatedAt: config.health()[0]!.updatedAt!,
  }]);
});

Deno.test("fromEnv() reads Deno.env by default", async () => {
  Deno.env.set("TROUPE_CFG_TEST__SOME_VALUE", "42");
  try {
    await using config = await createConfig({ sources: [fromEnv("TROUPE_CFG_TEST_")] });
    assert.equal(config.get("someValue", 0), 42);
  } finally {
    Deno.env.delete("TROUPE_CFG_TEST__SOME_VALUE");
  }
});
