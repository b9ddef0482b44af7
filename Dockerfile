# syntax=docker/dockerfile:1
# proofpoint-sidecar image: the compiled sidecar on Node 20, production dependencies only, run as
# the image's unprivileged `node` user. test/deploy/dockerfile.test.ts runs these same build and
# start steps outside Docker, so edit both together.
#
# The tag is proofpoint-sidecar:<package.json version>, the one Compose and the Kubernetes
# manifests name (docs/deployment.md "The image": build, push to a registry, point manifests at it):
#
#   docker build -t proofpoint-sidecar:0.1.0 .
#   docker run --rm -v "$PWD/config.yaml:/etc/proofpoint-sidecar/config.yaml:ro" \
#     -v pps-state:/var/lib/proofpoint-sidecar -e TAP_PRINCIPAL -e TAP_SECRET proofpoint-sidecar:0.1.0
#
# The config must set globals.state_dir: /var/lib/proofpoint-sidecar (the volume) and, for the
# health check, globals.http.listen: 127.0.0.1:2021 (or set PPS_HEALTH_URL to match).

# --- build: dev dependencies, TypeScript -> dist/ -------------------------------------------
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The npm cache is a build cache mount: it speeds up rebuilds and never lands in a layer.
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY plugin ./plugin
RUN npm run build

# --- runtime: dist/ and production dependencies only ----------------------------------------
FROM node:20-slim AS runtime
ENV NODE_ENV=production \
    PPS_HEALTH_URL=http://127.0.0.1:2021/healthz
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/dist ./dist
# State (LevelDB, dead letters) lives on a volume owned by the unprivileged user; the config is a
# file mounted read-only at /etc/proofpoint-sidecar/config.yaml.
RUN mkdir -p /var/lib/proofpoint-sidecar /etc/proofpoint-sidecar \
 && chown node:node /var/lib/proofpoint-sidecar
VOLUME ["/var/lib/proofpoint-sidecar"]
# `node` (uid 1000) ships with the official image; the app files stay root-owned and read-only.
USER node
# /healthz answers 200 while the process is alive; slim images have no curl, so Node asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "require('http').get(process.env.PPS_HEALTH_URL, { timeout: 4000 }, (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1)).on('timeout', () => process.exit(1))"]
# SIGTERM makes `run` stop the sources, wait for Fluent Bit's acks (globals.shutdown_timeout_secs),
# commit and exit 0; give it that long (docker stop -t / terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/plugin/main.js"]
CMD ["run", "--config", "/etc/proofpoint-sidecar/config.yaml"]
