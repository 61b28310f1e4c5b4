#!/bin/sh
# The container's node_modules: production dependencies from the lockfile for one CPU (`amd64` or
# `x64`, `arm64`; default this machine's), without the embedded stack. Further arguments go to npm. Run in a folder holding
# package.json, package-lock.json and .npmrc, by the Dockerfile's deps stage and by
# scripts/check-runtime-image.sh, so the two cannot drift apart.
#
# The embedded stack is package.json's optionalDependencies, all of them (test/stack.test.ts holds
# that list to src/stack/packages.ts): a worker with PLATFORM_SUPABASE_URL needs none of it. They
# are uninstalled by name, not with `--omit=optional`, which would also drop the per-platform native
# packages that @livekit/rtc-node, @livekit/local-inference and sharp ship as optional dependencies.
# --cpu/--os pick those for the target, so this can run on another platform than the image's (no
# production dependency builds native code at install: onnxruntime-node's download is off in .npmrc).
set -eu
arch=${1:-$(node -p process.arch)}
[ $# -eq 0 ] || shift
[ "$arch" != amd64 ] || arch=x64
target="--cpu=$arch --os=linux"
stack=$(node -p "Object.keys(require('./package.json').optionalDependencies ?? {}).join(' ')")
# $target and $stack are lists of words; further arguments go to npm as they are.
# shellcheck disable=SC2086
npm ci --omit=dev --no-audit --no-fund $target "$@"
# --no-save: package.json and the lockfile stay as they are; only node_modules loses the stack.
# shellcheck disable=SC2086
[ -z "$stack" ] || npm uninstall --no-save --omit=dev --no-audit --no-fund $target "$@" $stack
