#!/usr/bin/env bash
# What the Dockerfile's runtime stage does, done without a Docker engine: production dependencies
# only, the built dist/, started by node itself as an unprivileged user; then the HEALTHCHECK's
# request is answered and SIGTERM stops the worker cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f dist/agent/main.js ] || npm run build
app=$(mktemp -d /tmp/sidekick-runtime.XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$app"' EXIT
cp package.json package-lock.json .npmrc "$app/"
(cd "$app" && npm ci --omit=dev --no-audit --no-fund >/dev/null 2>&1)
cp -r dist migrations "$app/"
# (typescript itself ships as a dependency of @livekit/agents, so look for our own dev tools.)
if [ -d "$app/node_modules/vitest" ] || [ -d "$app/node_modules/@biomejs" ] || [ -d "$app/node_modules/tsx" ]; then
  echo "runtime image: dev dependencies were installed" >&2; exit 1
fi
chmod -R a+rX "$app"
node_bin=$(command -v node)
[ -x node_modules/.bin/node ] && node_bin=$(readlink -f node_modules/.bin/node)
port=18181
cd "$app"
# As the Dockerfile's CMD: node directly (the image's `USER node` is `nobody` here).
HOME=/tmp HEALTH_PORT=$port NODE_ENV=production runuser -u nobody -- "$node_bin" dist/agent/main.js start >"$app/worker.log" 2>&1 &
pid=$!
for _ in $(seq 1 90); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
  [ "$code" = "503" ] || [ "$code" = "200" ] && break
  sleep 1
done
echo "runtime image: GET / -> $code (503 = up, waiting for LiveKit)"
[ "$code" = "503" ] || [ "$code" = "200" ] || { tail -20 "$app/worker.log" >&2; exit 1; }
curl -sf "http://127.0.0.1:$port/worker" >/dev/null || { echo "runtime image: /worker did not answer" >&2; exit 1; }
kill -TERM "$pid"
for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$pid" 2>/dev/null; then echo "runtime image: worker ignored SIGTERM" >&2; exit 1; fi
sleep 1
if pgrep -f "$app/node_modules/postgrest" >/dev/null; then
  echo "runtime image: the embedded stack's PostgREST outlived the worker" >&2; exit 1
fi
echo "runtime image: started, answered the health check and stopped on SIGTERM"
# The operators' command ships in the same image: `node dist/cli.js ...`.
HOME=/tmp runuser -u nobody -- "$node_bin" dist/cli.js --help >/dev/null
set +e
HOME=/tmp runuser -u nobody -- "$node_bin" dist/cli.js clients show --client x >/dev/null 2>&1
code=$?
set -e
[ "$code" = "2" ] || { echo "runtime image: sidekick without a platform exited $code, expected 2" >&2; exit 1; }
echo "runtime image: the sidekick command answers --help and exits 2 without a platform"
