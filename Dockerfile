# syntax=docker/dockerfile:1
# The worker as one image for linux/amd64 and linux/arm64 (README: "Health, shutdown, deployment"):
#   docker buildx build --platform linux/amd64,linux/arm64 -t sidekick-worker .
# The stages that run commands run on the builder's own platform: dist/ is plain JavaScript, and
# the deps stage installs the target's packages with npm's --cpu/--os (no production dependency
# builds native code at install), so no emulation is needed. The runtime stage only copies.
# scripts/check-runtime-image.sh does the same steps without Docker (CI runs it).

FROM --platform=$BUILDPLATFORM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Production dependencies for the target platform, without the embedded stack (PGlite, pgvector,
# PostgREST: package.json's optionalDependencies), which a worker with PLATFORM_SUPABASE_URL never uses.
FROM --platform=$BUILDPLATFORM node:24-slim AS deps
ARG TARGETARCH
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY scripts/install-runtime.sh ./scripts/
RUN sh scripts/install-runtime.sh "$TARGETARCH"

FROM node:24-slim AS runtime
ENV NODE_ENV=production \
    HEALTH_PORT=8081
WORKDIR /app
# package.json: dist/ is ES modules ("type": "module").
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The sidekick CLI (node dist/cli.js) applies migrations/dedicated to the dedicated projects it provisions.
COPY migrations ./migrations
USER node
EXPOSE 8081
# GET / is 200 only while registered with LiveKit (readiness); /worker answers whenever the process lives.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+process.env.HEALTH_PORT+'/').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# node itself is PID 1's command (no npm in between), so SIGTERM reaches the worker and it drains.
CMD ["node", "dist/agent/main.js", "start"]
