/**
 * The gateway's OpenAPI 3.1 document (`GET /openapi.json` under the gateway's mount point):
 * every exposed route, the payload and reply schemas the handlers declare (as JSON Schema,
 * when the schema library offers a conversion), the error bodies and codes, and the bearer
 * token scheme.
 *
 * @module
 */

import type { ActorDefinition } from "../../mod.ts";
import type { StandardSchemaV1, StreamSchema } from "../../spi.ts";

/** A JSON Schema (2020-12), as an object. */
export type JsonSchema = Record<string, unknown>;

/**
 * Options of the OpenAPI document (`openapi` in the gateway's options).
 *
 * @example
 * ```ts
 * import type { OpenApiOptions } from "@troupe/troupe/hono";
 * const openapi: OpenApiOptions = { title: "Bank API", version: "2.1.0" };
 * ```
 */
export interface OpenApiOptions {
  /** `info.title`. @default {"Troupe gateway"} */
  title?: string;
  /** `info.version`: the version of your API. @default {"1.0.0"} */
  version?: string;
  /** `info.description`. @default {none} */
  description?: string;
  /**
   * Turns a payload or reply schema into JSON Schema when the schema offers no conversion of
   * its own (Standard JSON Schema's `~standard.jsonSchema`, as Zod 4.2+ and ArkType do, or a
   * `toJSONSchema()` method). For Valibot: `(schema) => toJsonSchema(schema)` with
   * `toJsonSchema` from `@valibot/to-json-schema`, or wrap the schema in its
   * `toStandardJsonSchema()`. Return `undefined` for "any value".
   * @default {none: such schemas show as any value}
   */
  jsonSchema?: (schema: StandardSchemaV1, io: "input" | "output") => object | undefined;
}

/** An exposed actor type, as the gateway sees it. */
export interface ExposedType {
  /** The actor type name. */
  readonly name: string;
  /** Its definition, when the gateway has it. */
  // deno-lint-ignore no-explicit-any
  readonly def: ActorDefinition<any> | undefined;
  /** The handler names exposed; `undefined`: every handler of `def`. */
  readonly handlers: ReadonlySet<string> | undefined;
}

/** What the document describes besides the exposed types. */
export interface OpenApiContext {
  /** The gateway's mount point (`/api`), the document's server URL. */
  readonly base: string;
  /** Whether the gateway refuses calls without a token (`auth.required`). */
  readonly tokenRequired: boolean;
}

// ---- JSON Schema of a Standard Schema ----

interface Convertible {
  readonly "~standard"?: {
    readonly vendor?: string;
    readonly jsonSchema?: {
      readonly input?: (options: { target: string }) => JsonSchema;
      readonly output?: (options: { target: string }) => JsonSchema;
    };
  };
  readonly toJSONSchema?: (params?: Record<string, unknown>) => JsonSchema;
}

/** Conversions done, per converter (the library's own: {@link OWN}) and schema. */
const converted = new WeakMap<object, WeakMap<object, Map<string, JsonSchema | undefined>>>();
const OWN = {};

/**
 * The JSON Schema of `schema` (`io`: what it accepts, or what it gives back): from Standard JSON
 * Schema (`~standard.jsonSchema`), else a `toJSONSchema()` method, else `options.jsonSchema`;
 * `undefined` when none applies or the conversion throws (a transform JSON Schema cannot say).
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { jsonSchemaOf } from "@troupe/troupe/hono";
 * jsonSchemaOf(z.number().positive(), "input"); // { type: "number", exclusiveMinimum: 0 }
 * ```
 */
export function jsonSchemaOf(
  schema: StandardSchemaV1,
  io: "input" | "output",
  options: OpenApiOptions = {},
): JsonSchema | undefined {
  const byConverter = converted.get(options.jsonSchema ?? OWN) ?? new WeakMap();
  converted.set(options.jsonSchema ?? OWN, byConverter);
  let cache = byConverter.get(schema);
  if (!cache) byConverter.set(schema, cache = new Map());
  if (cache.has(io)) return cache.get(io);
  const s = schema as Convertible;
  const attempts: (() => JsonSchema | undefined)[] = [
    () => s["~standard"]?.jsonSchema?.[io]?.({ target: "draft-2020-12" }),
    () => s.toJSONSchema?.({ io, target: "draft-2020-12", unrepresentable: "any" }),
    () => options.jsonSchema?.(schema, io) as JsonSchema | undefined,
  ];
  let out: JsonSchema | undefined;
  for (const attempt of attempts) {
    try {
      out = attempt();
    } catch {
      out = undefined;
    }
    if (out && typeof out === "object") break;
  }
  if (out) {
    const { $schema: _, ...rest } = out;
    out = rest;
  }
  cache.set(io, out);
  return out;
}

// ---- the document ----

const ERROR_RESPONSES: readonly [status: number, name: string, description: string][] = [
  [400, "BadPayload", "`bad_payload`: the body cannot be decoded, or fails the handler's schema"],
  [401, "Unauthorized", "`unauthorized`: no valid token where one is needed"],
  [403, "Forbidden", "`forbidden`: a valid caller that no access rule allows"],
  [404, "NotFound", "`unknown_handler`, `unknown_actor_type`, `not_found`: not exposed"],
  [408, "RequestTimeout", "`timeout`: the body did not arrive within the gateway's `bodyTimeout`"],
  [409, "Conflict", "`conflict`: an idempotency key reused for another call"],
  [413, "PayloadTooLarge", "`bad_payload`: a body over the gateway's `maxBody`"],
  [415, "UnsupportedMediaType", "`bad_payload`: a body that is neither JSON nor MessagePack"],
  [422, "HandlerError", "The handler's own error code (`error.code`), with its `data`"],
  [429, "TooManyRequests", "`overloaded` or `rate_limited`: try again after `Retry-After`"],
  [500, "Internal", "`internal`: an unexpected failure (details are in the node's log)"],
  [503, "Unavailable", "`unavailable`, `closed`: no node can take it now (`Retry-After`)"],
  [504, "Timeout", "`timeout`: the handler did not answer before its deadline"],
];

const errorRef = (name: string) => ({ $ref: `#/components/responses/${name}` });

function components(): Record<string, unknown> {
  const retryAfter = {
    "retry-after": { description: "Seconds to wait", schema: { type: "integer", minimum: 0 } },
  };
  const responses: Record<string, unknown> = {};
  for (const [status, name, description] of ERROR_RESPONSES) {
    responses[name] = {
      description,
      ...(status === 429 || status === 503 ? { headers: retryAfter } : {}),
      content: {
        "application/json": {
          schema: { $ref: `#/components/schemas/${status === 400 ? "BadPayload" : "Error"}` },
        },
      },
    };
  }
  responses.MethodNotAllowed = {
    description: "`method_not_allowed`: call a handler with POST (GET is for SSE and WebSocket)",
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  };
  responses.NotAcceptable = {
    description: "`bad_payload`: a streaming handler without `Accept: text/event-stream`, or " +
      "a plain one with it",
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  };
  return {
    schemas: {
      Error: {
        type: "object",
        required: ["error"],
        properties: {
          error: {
            type: "object",
            required: ["code", "message"],
            properties: {
              code: { type: "string", description: "A stable snake_case code" },
              message: { type: "string" },
              data: { description: "The error's data, when it has some" },
            },
          },
        },
      },
      BadPayload: {
        type: "object",
        required: ["error"],
        properties: {
          error: {
            type: "object",
            required: ["code", "message"],
            properties: {
              code: { const: "bad_payload" },
              message: { type: "string" },
              data: {
                type: "object",
                properties: {
                  issues: {
                    type: "array",
                    description: "Where the payload fails its schema",
                    items: {
                      type: "object",
                      required: ["path", "message"],
                      properties: {
                        path: {
                          type: "array",
                          items: { type: ["string", "integer"] },
                          description: "Keys from the payload's root to the value at fault",
                        },
                        message: { type: "string" },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
    responses,
    securitySchemes: {
      bearer: {
        type: "http",
        scheme: "bearer",
        bearerFormat: "JWT",
        description: "The caller's token, verified by the node that runs the handler",
      },
    },
  };
}

const ANY: JsonSchema = { description: "Any value (the handler declares no schema)" };

function isStreamSchema(schema: StandardSchemaV1 | undefined): schema is StreamSchema {
  return schema !== undefined && typeof schema === "object" && "items" in schema &&
    (schema as StreamSchema)["~standard"].vendor === "troupe";
}

/** Who may call: `[]`-free OpenAPI security requirements of one handler. */
function security(
  def: ExposedType["def"],
  handler: string,
  tokenRequired: boolean,
): Record<string, string[]>[] {
  const bearer = { bearer: [] };
  if (tokenRequired) return [bearer];
  const rule = def?.access?.[handler] ?? def?.access?.["*"];
  // no access map: as the hosting node's auth decides; "public": no token needed
  if (rule === undefined || rule === "public") return [{}, bearer];
  return [bearer];
}

/**
 * The OpenAPI 3.1 document of a gateway exposing `types`.
 *
 * @example
 * ```ts
 * import { defineActor } from "@troupe/troupe";
 * import { openApiDocument } from "@troupe/troupe/hono";
 * const Echo = defineActor({ name: "echo", handlers: { say: (_ctx, s: string) => s } });
 * const doc = openApiDocument(
 *   [{ name: "echo", def: Echo, handlers: undefined }],
 *   { base: "/api", tokenRequired: false },
 * );
 * console.log(Object.keys(doc.paths as object)); // ["/healthz", "/readyz", "/echo/{id}/say"]
 * ```
 */
export function openApiDocument(
  types: Iterable<ExposedType>,
  context: OpenApiContext,
  options: OpenApiOptions = {},
): Record<string, unknown> {
  const paths: Record<string, unknown> = {
    "/healthz": {
      get: {
        operationId: "healthz",
        tags: ["health"],
        summary: "Liveness: 200 while the process serves",
        security: [{}],
        responses: { "200": { description: "Serving" } },
      },
    },
    "/readyz": {
      get: {
        operationId: "readyz",
        tags: ["health"],
        summary: "Readiness: 200 while this node is a live member of the cluster",
        security: [{}],
        responses: { "200": { description: "Ready" }, "503": { description: "Not ready" } },
      },
    },
  };
  const tags: { name: string; description?: string }[] = [{ name: "health" }];
  const schemaOf = (schema: StandardSchemaV1 | undefined, io: "input" | "output") =>
    (schema && jsonSchemaOf(schema, io, options)) ?? ANY;
  for (const entry of types) {
    const def = entry.def;
    tags.push({
      name: entry.name,
      ...(def?.stateless ? { description: "A stateless worker type" } : {}),
    });
    const names = entry.handlers ? [...entry.handlers] : Object.keys(def?.handlers ?? {});
    for (const handler of names) {
      const schemas = def?.schemas[handler];
      const streaming = def?.streaming.has(handler) ?? false;
      const input = schemas?.input;
      const readsStream = isStreamSchema(input);
      const stateless = def?.stateless ?? false;
      const path = stateless ? `/${entry.name}/${handler}` : `/${entry.name}/{id}/${handler}`;
      const parameters: unknown[] = stateless ? [] : [{
        name: "id",
        in: "path",
        required: true,
        description: "The actor id (percent-encoded; at most 256 UTF-8 bytes)",
        schema: { type: "string" },
      }];
      const common = {
        tags: [entry.name],
        security: security(def, handler, context.tokenRequired),
      };
      const errors = Object.fromEntries(
        ERROR_RESPONSES.map(([status, name]) => [String(status), errorRef(name)]),
      );
      const item: Record<string, unknown> = {};
      if (readsStream) {
        // Only a WebSocket carries an input stream.
        item.get = {
          ...common,
          operationId: `${entry.name}.${handler}`,
          summary: `${entry.name}.${handler}: a WebSocket (duplex)`,
          description: "Upgrade to a WebSocket: each text frame sent is one input item " +
            "(JSON, `x-troupe-input-item`), each item of the reply one text frame.",
          "x-troupe-input-item": schemaOf(input.items, "input"),
          parameters,
          ...(streaming ? { "x-troupe-item": schemaOf(schemas?.output, "output") } : {}),
          responses: { "101": { description: "Switching Protocols" }, ...errors },
        };
      } else if (streaming) {
        const body = {
          type: "string",
          description: "Server-Sent Events: `data:` one item as " +
            "JSON (`x-troupe-item`), `event: end` at the end, `event: error` with " +
            "`{ code, message }`",
        };
        const sse = {
          "200": { description: "The items", content: { "text/event-stream": { schema: body } } },
          "406": errorRef("NotAcceptable"),
          ...errors,
        };
        item.post = {
          ...common,
          operationId: `${entry.name}.${handler}`,
          summary: `${entry.name}.${handler}: a stream (Server-Sent Events)`,
          description: "Send `Accept: text/event-stream`. The same path as a WebSocket " +
            "(GET with an upgrade) is duplex.",
          "x-troupe-item": schemaOf(schemas?.output, "output"),
          ...requestBody(schemaOf(input, "input"), input !== undefined),
          parameters,
          responses: sse,
        };
        item.get = {
          ...common,
          operationId: `${entry.name}.${handler}.events`,
          summary: `${entry.name}.${handler}: a stream for EventSource`,
          "x-troupe-item": schemaOf(schemas?.output, "output"),
          parameters: [...parameters, {
            name: "payload",
            in: "query",
            required: input !== undefined,
            description: "The payload as JSON",
            content: { "application/json": { schema: schemaOf(input, "input") } },
          }],
          responses: sse,
        };
      } else {
        item.post = {
          ...common,
          operationId: `${entry.name}.${handler}`,
          summary: `${entry.name}.${handler}`,
          ...requestBody(schemaOf(input, "input"), input !== undefined),
          parameters: [
            ...parameters,
            {
              name: "idempotency-key",
              in: "header",
              required: false,
              description: "Makes retries safe: the same key gets the first reply again",
              schema: { type: "string", maxLength: 256 },
            },
            {
              name: "prefer",
              in: "header",
              required: false,
              description: "`respond-async`: send without waiting for the reply (`202`)",
              schema: { type: "string", enum: ["respond-async"] },
            },
          ],
          responses: {
            "200": {
              description: "The reply",
              content: {
                "application/json": { schema: schemaOf(schemas?.output, "output") },
                "application/msgpack": {},
              },
            },
            "202": { description: "Accepted by the actor's mailbox (`Prefer: respond-async`)" },
            "405": errorRef("MethodNotAllowed"),
            "406": errorRef("NotAcceptable"),
            ...errors,
          },
        };
      }
      paths[path] = item;
    }
  }
  return {
    openapi: "3.1.0",
    info: {
      title: options.title ?? "Troupe gateway",
      version: options.version ?? "1.0.0",
      ...(options.description !== undefined ? { description: options.description } : {}),
    },
    servers: [{ url: context.base === "" ? "/" : context.base }],
    tags,
    paths,
    components: components(),
  };
}

function requestBody(schema: JsonSchema, required: boolean): Record<string, unknown> {
  return {
    requestBody: {
      required,
      description: "The payload (JSON, or MessagePack with `Content-Type: application/msgpack`)",
      content: { "application/json": { schema }, "application/msgpack": {} },
    },
  };
}
