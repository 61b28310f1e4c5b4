#!/usr/bin/env bash
# real-postgres.sh: a real PostgreSQL 15 server with pgvector on this machine, for tests and benchmarks.
#
# Usage (as root, on Debian 12 with Debian's postgresql-15):
#   bash scripts/real-postgres.sh          # same as "start"
#   bash scripts/real-postgres.sh start    # build pgvector if missing, start (or reuse) a throwaway cluster,
#                                          # print exactly one line on stdout:
#                                          #   STACK_POSTGRES_URL=postgres://postgres@127.0.0.1:<port>/postgres
#   bash scripts/real-postgres.sh stop     # stop the cluster (pg_ctl stop -m fast) and remove its data directory
#
#   eval "export $(bash scripts/real-postgres.sh)"   # puts STACK_POSTGRES_URL in the environment
#
# Environment:
#   PGDATA_DIR      data directory of the cluster (default /tmp/sidekick-pg)
#   PGPORT_WANTED   first port to try (default 54329); the first free port from there is used
#   DEBIAN_MIRROR   mirror for the trixie deb-src line (default: the mirror this machine's apt sources use)
#   REAL_PG_REBUILD=1  rebuild and reinstall pgvector even if it is already installed
#
# What it does:
#   1. pgvector: Debian bookworm has no pgvector for PostgreSQL 15, but trixie's source package builds
#      against it in seconds. If vector.control or vector.so is missing, it installs the build
#      dependencies (postgresql-server-dev-15, make, gcc, dpkg-dev), adds a trixie deb-src line to
#      /etc/apt/sources.list.d/sidekick-trixie-src.list for the machine's own Debian mirror,
#      runs `apt-get source pgvector/trixie` and `make && make install`. `apt-get update` runs only
#      when a package or the source cannot be found without it.
#   2. Cluster: if a server is already running on PGDATA_DIR it is reused. Otherwise PGDATA_DIR is
#      re-created with initdb (as the postgres OS user): trust auth, listening on 127.0.0.1 only,
#      Unix socket inside the data directory, settings for tests (fsync, synchronous_commit and
#      full_page_writes off; max_connections 200; shared_buffers 256MB; maintenance_work_mem 512MB).
#      It is started with pg_ctl (log: PGDATA_DIR/server.log) and `CREATE EXTENSION IF NOT EXISTS
#      vector` is run in the postgres database to prove the extension loads.
#   The data is throwaway: fsync is off, and a stopped cluster is wiped and re-created on the next start.
#   All progress goes to stderr. Runs are serialised with flock on /tmp/real-postgres.lock.
set -euo pipefail

# Only the final URL line goes to the real stdout (fd 3); everything else goes to stderr.
exec 3>&1 1>&2

PGBIN=/usr/lib/postgresql/15/bin
export PATH="$PGBIN:$PATH"
DATA=${PGDATA_DIR:-/tmp/sidekick-pg}
PORT_WANTED=${PGPORT_WANTED:-54329}
SRC_LIST=/etc/apt/sources.list.d/sidekick-trixie-src.list
MARKER=.port # written by this script into every data directory it creates; holds the port

say() { echo "real-postgres: $*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; }

cmd=${1:-start}
case "$cmd" in
start | stop) ;;
-h | --help | help)
  usage
  exit 0
  ;;
*)
  usage
  die "unknown subcommand '$cmd' (expected start or stop)"
  ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and runs PostgreSQL as the postgres user); try: sudo bash $0 $cmd"
[ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 server binaries not found in $PGBIN; install them with: apt-get install postgresql-15"
id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist; it comes with Debian's postgresql-common package"
case "$PORT_WANTED" in
'' | *[!0-9]*) die "PGPORT_WANTED='$PORT_WANTED' is not a port number" ;;
esac
case "$DATA" in
/*) ;;
*) die "PGDATA_DIR='$DATA' must be an absolute path" ;;
esac
[ "$DATA" != / ] || die "PGDATA_DIR must not be /"

exec 9>/tmp/real-postgres.lock
flock -w 900 9 || die "another real-postgres.sh run still holds /tmp/real-postgres.lock after 15 minutes"

# Run a command as the postgres OS user, from a directory it can read.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }
psql_do() { "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -qAt "$@"; }

# pg_ctl start leaves the postmaster with every file descriptor it inherits. Close all but
# stdin/stdout/stderr first, so that the server holds neither the lock file (which would block
# the next run) nor the caller's stdout (which would hang URL=$(bash real-postgres.sh)).
start_server() {
  (
    cd /
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start </dev/null >&2
  )
}

server_running() { [ -f "$DATA/PG_VERSION" ] && as_postgres "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

# Refuse to delete a directory this script did not create.
wipe_data_dir() {
  if [ -d "$DATA" ] && [ -n "$(ls -A "$DATA" 2>/dev/null)" ] && [ ! -f "$DATA/$MARKER" ]; then
    die "$DATA is not empty and was not created by this script (no $MARKER in it); remove it yourself or set PGDATA_DIR to another directory"
  fi
  rm -rf "$DATA"
}

if [ "$cmd" = stop ]; then
  if [ ! -e "$DATA" ]; then
    say "nothing to stop: $DATA does not exist"
    exit 0
  fi
  if server_running; then
    say "stopping the cluster in $DATA"
    as_postgres "$PGBIN/pg_ctl" -D "$DATA" stop -m fast -w >&2 ||
      die "pg_ctl stop failed for $DATA; see $DATA/server.log, then retry or kill the postmaster (pid on the first line of $DATA/postmaster.pid)"
  fi
  wipe_data_dir
  say "stopped; removed $DATA"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# 1. pgvector
# ---------------------------------------------------------------------------------------------
apt_updated=0
apt_update() {
  [ "$apt_updated" = 0 ] || return 0
  say "apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed; check network access to the Debian mirror and the files in /etc/apt/sources.list.d"
  apt_updated=1
}

apt_install() {
  say "installing $*"
  # dpkg's progress on stdout is dropped; apt's and dpkg's errors still reach stderr.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
    [ "$apt_updated" = 0 ] || die "apt-get install $* failed"
    say "apt-get install failed; retrying after apt-get update"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
      die "apt-get install $* failed even after apt-get update"
  fi
}

# The Debian mirror this machine already uses: the URI of the first enabled 'deb' source whose
# suite is exactly this release's codename (so security, updates and third-party repositories are skipped).
find_mirror() {
  local codename
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || codename=bookworm
  local f
  {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      awk -v cn="$codename" '
        $1 == "deb" {
          i = 2
          if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == cn) print $i
        }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v cn="$codename" '
        BEGIN { RS = ""; FS = "\n" }
        {
          t = u = s = ""; en = "yes"
          for (i = 1; i <= NF; i++) {
            line = $i
            if (line ~ /^[ \t]*#/) continue
            k = line; sub(/:.*/, "", k); k = tolower(k)
            v = line; sub(/^[^:]*:[ \t]*/, "", v)
            if (k == "types") t = v; else if (k == "uris") u = v
            else if (k == "suites") s = v; else if (k == "enabled") en = tolower(v)
          }
          if (en == "no" || (" " t " ") !~ / deb /) next
          n = split(s, a, /[ \t]+/)
          for (j = 1; j <= n; j++) if (a[j] == cn) { split(u, b, /[ \t]+/); print b[1]; next }
        }' "$f"
    done
  } | head -n 1
}

install_pgvector() {
  local ext_dir lib_dir
  ext_dir="$("$PGBIN/pg_config" --sharedir)/extension"
  lib_dir=$("$PGBIN/pg_config" --pkglibdir)
  if [ "${REAL_PG_REBUILD:-0}" != 1 ] && [ -f "$ext_dir/vector.control" ] && [ -f "$lib_dir/vector.so" ]; then
    return 0
  fi
  say "building pgvector for PostgreSQL 15 from Debian trixie's source package"

  local need=()
  dpkg -s postgresql-server-dev-15 >/dev/null 2>&1 || need+=(postgresql-server-dev-15)
  command -v dpkg-source >/dev/null || need+=(dpkg-dev)
  command -v make >/dev/null || need+=(make)
  command -v gcc >/dev/null || need+=(gcc)
  [ ${#need[@]} = 0 ] || apt_install "${need[@]}"

  if [ ! -f "$SRC_LIST" ]; then
    local mirror=${DEBIAN_MIRROR:-}
    [ -n "$mirror" ] || mirror=$(find_mirror)
    [ -n "$mirror" ] || die "found no Debian mirror for this release in /etc/apt/sources.list or /etc/apt/sources.list.d; set DEBIAN_MIRROR=<mirror URL ending in /debian>"
    say "adding 'deb-src $mirror trixie main' to $SRC_LIST"
    echo "deb-src $mirror trixie main" >"$SRC_LIST"
    apt_updated=0
    apt_update # the new source has no index yet
  fi

  local work
  work=$(mktemp -d /tmp/real-postgres-pgvector.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  chown _apt "$work" 2>/dev/null || true # lets apt download as its sandbox user instead of warning
  if ! (cd "$work" && apt-get source -qq pgvector/trixie >&2); then
    [ "$apt_updated" = 0 ] || die "apt-get source pgvector/trixie failed (source line: $SRC_LIST)"
    say "apt-get source failed; retrying after apt-get update"
    apt_update
    rm -rf "${work:?}"/*
    (cd "$work" && apt-get source -qq pgvector/trixie >&2) ||
      die "apt-get source pgvector/trixie failed even after apt-get update (source line: $SRC_LIST)"
  fi
  local src
  src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
  [ -n "$src" ] || die "apt-get source pgvector/trixie produced no pgvector-* directory in $work"
  say "compiling $(basename "$src")"
  # OPTFLAGS="" drops upstream's -march=native, as Debian does, so the library runs on any x86-64 CPU.
  make -C "$src" -s -j"$(nproc)" PG_CONFIG="$PGBIN/pg_config" OPTFLAGS="" >&2 ||
    die "building pgvector failed in $src (kept for inspection)"
  make -C "$src" -s PG_CONFIG="$PGBIN/pg_config" install >&2 || die "make install of pgvector failed"
  if [ ! -f "$ext_dir/vector.control" ] || [ ! -f "$lib_dir/vector.so" ]; then
    die "make install ran but $ext_dir/vector.control or $lib_dir/vector.so is missing"
  fi
  rm -rf "$work"
  trap - EXIT
  say "pgvector installed: $ext_dir/vector.control, $lib_dir/vector.so"
}

install_pgvector

# ---------------------------------------------------------------------------------------------
# 2. Cluster
# ---------------------------------------------------------------------------------------------
port_free() { ! (exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_ready() {
  local port=$1 _
  for _ in $(seq 1 100); do
    "$PGBIN/pg_isready" -h 127.0.0.1 -p "$port" -q && return 0
    sleep 0.2
  done
  die "server in $DATA does not accept connections on 127.0.0.1:$port after 20 s; see $DATA/server.log"
}

if server_running; then
  # The port from postmaster.pid (4th line) is authoritative for a running server.
  port=$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)
  [ -n "$port" ] || port=$(cat "$DATA/$MARKER" 2>/dev/null || true)
  [ -n "$port" ] || die "a server runs on $DATA but its port is unknown; run: bash $0 stop"
  say "reusing the running cluster in $DATA (port $port)"
  wait_ready "$port"
else
  wipe_data_dir
  parent=$(dirname "$DATA")
  mkdir -p "$parent"
  as_postgres test -x "$parent" || die "the postgres OS user cannot reach $parent; choose a PGDATA_DIR under /tmp"
  mkdir -m 700 "$DATA"
  chown postgres:postgres "$DATA"

  port=$PORT_WANTED
  while ! port_free "$port"; do
    port=$((port + 1))
    [ "$port" -lt $((PORT_WANTED + 200)) ] || die "no free port in $PORT_WANTED..$((PORT_WANTED + 199)) on 127.0.0.1; set PGPORT_WANTED"
  done

  say "initdb $DATA"
  initdb_log=$(mktemp)
  if ! as_postgres "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$initdb_log" 2>&1; then
    cat "$initdb_log" >&2
    rm -f "$initdb_log"
    die "initdb failed for $DATA (output above)"
  fi
  rm -f "$initdb_log"
  echo "$port" >"$DATA/$MARKER"

  # Parallel index builds put maintenance_work_mem in dynamic shared memory; a small /dev/shm
  # (containers often have 64 MB) cannot hold that, so fall back to files in the data directory.
  dsm=posix
  shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
  if [ -z "$shm_kb" ] || [ "$shm_kb" -lt 1048576 ]; then dsm=mmap; fi

  cat >>"$DATA/postgresql.conf" <<CONF

# --- real-postgres.sh: throwaway cluster for tests and benchmarks ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$DATA'
max_connections = 200
shared_buffers = 256MB
maintenance_work_mem = 512MB
fsync = off
synchronous_commit = off
full_page_writes = off
dynamic_shared_memory_type = $dsm
CONF
  cat >"$DATA/pg_hba.conf" <<HBA
# real-postgres.sh: trust on the Unix socket (inside the data directory) and on loopback only
local all all              trust
host  all all 127.0.0.1/32 trust
HBA
  chown postgres:postgres "$DATA/$MARKER" "$DATA/pg_hba.conf"

  say "starting PostgreSQL on 127.0.0.1:$port"
  start_server ||
    die "the server in $DATA did not start; last lines of $DATA/server.log: $(tail -n 5 "$DATA/server.log" 2>/dev/null)"
  wait_ready "$port"

  url="postgres://postgres@127.0.0.1:$port/postgres"
  psql_do "$url" -c "CREATE EXTENSION IF NOT EXISTS vector" >&2 ||
    die "CREATE EXTENSION vector failed; see $DATA/server.log (rebuild with REAL_PG_REBUILD=1 bash $0)"
  say "PostgreSQL $(psql_do "$url" -c 'show server_version') with pgvector $(psql_do "$url" -c "select extversion from pg_extension where extname = 'vector'")"
fi

echo "STACK_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres" >&3
