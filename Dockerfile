# syntax=docker/dockerfile:1
# The worker as one container: build with dev dependencies, run with production ones only.

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:24-slim AS runtime
ENV NODE_ENV=production \
    HEALTH_PORT=8081
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist ./dist
# The embedded stack (used when no platform is configured) applies these.
COPY migrations ./migrations
USER node
EXPOSE 8081
# GET / is 200 only while registered with LiveKit (readiness); /worker answers whenever the process lives.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+process.env.HEALTH_PORT+'/').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# node itself is PID 1's command (no npm in between), so SIGTERM reaches the worker and it drains.
CMD ["node", "dist/agent/main.js", "start"]
