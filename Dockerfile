# Troupe: one image for the gateway (the default command) and for the nodes (compose.yaml
# overrides the command). Not built on the machines this project is developed on (no
# Docker daemon there): the test suite runs the ENTRYPOINT and HEALTHCHECK commands below
# directly (tests/container_test.ts). See docs/deploy.md.

ARG DENO_VERSION=2.9.6

# 1. npm dependencies, resolved once from the lockfile (cached while package*.json do not
#    change). Deno itself is a devDependency: the runtime image brings its own.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# 2. the runtime: Deno on Debian slim (glibc, for libSQL's native module), non-root
FROM denoland/deno:debian-${DENO_VERSION}
WORKDIR /app
ENV DENO_DIR=/app/.deno \
    NO_COLOR=1 \
    HOSTNAME=0.0.0.0 \
    PORT=8000
COPY --from=deps /app/node_modules ./node_modules
COPY deno.json package.json ./
COPY mod.ts ./
COPY src ./src
COPY adapters ./adapters
COPY examples ./examples
# compile at build time so that a start needs nothing from the network or the disk cache dir
RUN deno cache examples/edge/main.ts examples/cluster/node.ts \
    && mkdir -p /data && chown deno:deno /data
USER deno
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["deno", "eval", "const r = await fetch(`http://127.0.0.1:${Deno.env.get('PORT') ?? 8000}/healthz`).catch(() => null); Deno.exit(r?.ok ? 0 : 1)"]
# the gateway: a client node over NATS; only network and environment access
ENTRYPOINT ["deno", "run", "--allow-net", "--allow-env", "--cached-only", "examples/edge/main.ts"]
