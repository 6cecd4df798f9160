/** `GET /api/openapi.json`: the gateway's OpenAPI 3.1 document, checked by a real validator. */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { validate } from "@readme/openapi-parser";
import * as v from "valibot";
import { toJsonSchema, toStandardJsonSchema } from "@valibot/to-json-schema";
import { z } from "zod";
import { createSystem, defineActor } from "../mod.ts";
import { gateway, type GatewayOptions } from "../adapters/hono/mod.ts";
import { Ledger } from "./schema_fixtures.ts";

const Resize = defineActor({
  name: "resize",
  stateless: true,
  handlers: {
    half: {
      input: toStandardJsonSchema(v.number()), // Valibot with its Standard JSON Schema
      handle: (_ctx, n) => n / 2,
    },
  },
});

const Vault = defineActor({
  name: "vault",
  access: { peek: "public", "*": "authenticated" },
  handlers: {
    peek: () => "a vault",
    open: { input: z.object({ pin: z.string().length(4) }), handle: () => true },
  },
});

type Doc = {
  paths: Record<string, Record<string, Record<string, unknown>>>;
  servers: { url: string }[];
};

async function documentOf(options: Partial<GatewayOptions> = {}) {
  const system = await createSystem({ actors: [Ledger, Resize], logger: "silent" });
  const app = new Hono().route(
    "/api",
    gateway(system, {
      expose: { ledger: Ledger, resize: Resize, vault: Vault, byname: ["ping"] },
      actors: [Vault],
      ...options,
    }),
  );
  const res = await app.request("/api/openapi.json");
  if (options.openapi === false) return { system, app, doc: undefined as unknown as Doc };
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  return { system, app, doc: (await res.json()) as Doc };
}

function requestSchema(op: Record<string, unknown>): unknown {
  const body = op.requestBody as { content: Record<string, { schema: unknown }> };
  return body.content["application/json"]!.schema;
}

Deno.test("openapi: the gateway serves an OpenAPI 3.1 document that a validator accepts", async () => {
  const { system, app, doc } = await documentOf();
  try {
    const result = await validate(structuredClone(doc) as never);
    assert.ok(result.valid, JSON.stringify(result, null, 2));
    assert.equal((doc as unknown as { openapi: string }).openapi, "3.1.0");
    assert.deepEqual(doc.servers, [{ url: "/api" }]);
    // every exposed handler has its route, and nothing else is listed
    assert.deepEqual(Object.keys(doc.paths).sort(), [
      "/byname/{id}/ping",
      "/healthz",
      "/ledger/{id}/balance",
      "/ledger/{id}/broken",
      "/ledger/{id}/countdown",
      "/ledger/{id}/deposit",
      "/ledger/{id}/depositAll",
      "/ledger/{id}/open",
      "/ledger/{id}/shout",
      "/readyz",
      "/resize/half",
      "/vault/{id}/open",
      "/vault/{id}/peek",
    ]);
    // the routes the document lists are the gateway's: none of them is 404 or 405
    for (const [path, item] of Object.entries(doc.paths)) {
      if (!item.post) continue;
      const res = await app.request(`/api${path.replace("{id}", "x")}`, { method: "POST" });
      const code = res.status === 200 ? "" : (await res.json()).error.code;
      // (a type no node hosts is a route all the same: unknown_actor_type)
      assert.ok(!["not_found", "unknown_handler", "method_not_allowed"].includes(code), path);
    }
  } finally {
    await system.close();
  }
});

Deno.test("openapi: payload and reply schemas come from the schema libraries", async () => {
  const { system, doc } = await documentOf({
    // plain Valibot schemas offer no conversion of their own: the gateway is given one
    openapi: { title: "Bank", version: "2.0.0", jsonSchema: (s) => toJsonSchema(s as never) },
  });
  try {
    assert.ok((await validate(structuredClone(doc) as never)).valid);
    assert.deepEqual((doc as unknown as { info: unknown }).info, {
      title: "Bank",
      version: "2.0.0",
    });
    const deposit = doc.paths["/ledger/{id}/deposit"]!.post!;
    // Zod 4 (Standard JSON Schema)
    assert.deepEqual(requestSchema(deposit), { type: "number", exclusiveMinimum: 0 });
    const reply =
      (deposit.responses as Record<string, { content?: Record<string, unknown> }>)["200"]!
        .content!["application/json"];
    assert.deepEqual(reply, { schema: { type: "number" } });
    // Valibot through the converter given in the options
    const open = requestSchema(doc.paths["/ledger/{id}/open"]!.post!) as {
      properties: Record<string, unknown>;
      required: string[];
    };
    assert.deepEqual(Object.keys(open.properties), ["owner", "limits"]);
    assert.deepEqual(open.required, ["owner", "limits"]);
    // Valibot wrapped in toStandardJsonSchema needs no converter
    assert.deepEqual(requestSchema(doc.paths["/resize/half"]!.post!), { type: "number" });
    // no schema: any value
    const balance = doc.paths["/ledger/{id}/balance"]!.post!;
    assert.equal((balance.requestBody as { required: boolean }).required, false);
    // a streaming handler is SSE (POST, and GET for EventSource) with its item schema
    const countdown = doc.paths["/ledger/{id}/countdown"]!;
    assert.ok(countdown.post && countdown.get);
    assert.deepEqual(countdown.post["x-troupe-item"], {
      type: "integer",
      minimum: 1,
      maximum: 9007199254740991,
    });
    // an input stream is a WebSocket, with the schema of each item
    const all = doc.paths["/ledger/{id}/depositAll"]!;
    assert.ok(all.get && !all.post);
    assert.equal((all.get["x-troupe-input-item"] as { type: string }).type, "integer");
  } finally {
    await system.close();
  }
});

Deno.test("openapi: errors and auth are described", async () => {
  const { system, doc } = await documentOf();
  try {
    const responses = doc.paths["/ledger/{id}/deposit"]!.post!.responses as Record<string, unknown>;
    for (
      const status of [
        "400",
        "401",
        "403",
        "404",
        "405",
        "406",
        "408",
        "409",
        "413",
        "415",
        "422",
        "429",
        "500",
        "503",
        "504",
      ]
    ) {
      assert.ok(status in responses, `status ${status} is described`);
    }
    const components = (doc as unknown as { components: Record<string, Record<string, unknown>> })
      .components;
    assert.deepEqual(
      Object.keys(components.securitySchemes!),
      ["bearer"],
    );
    const issues = JSON.stringify(components.schemas!.BadPayload);
    assert.match(issues, /"issues"/);
    // access rules: "public" needs no token, the others a bearer token
    assert.deepEqual(doc.paths["/vault/{id}/peek"]!.post!.security, [{}, { bearer: [] }]);
    assert.deepEqual(doc.paths["/vault/{id}/open"]!.post!.security, [{ bearer: [] }]);
  } finally {
    await system.close();
  }
  const required = await documentOf({ auth: { required: true } });
  try {
    assert.deepEqual(required.doc.paths["/vault/{id}/peek"]!.post!.security, [{ bearer: [] }]);
  } finally {
    await required.system.close();
  }
  const none = await documentOf({ openapi: false });
  try {
    assert.equal((await none.app.request("/api/openapi.json")).status, 404);
  } finally {
    await none.system.close();
  }
});
