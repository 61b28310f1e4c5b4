#!/usr/bin/env bash
# A real PostgreSQL 15 server with pgvector on this machine, for tests and benchmarks.
#
#   bash scripts/real-postgres.sh         # build pgvector if missing, start a cluster, print STACK_POSTGRES_URL=...
#   bash scripts/real-postgres.sh stop    # stop the cluster and remove its data directory
#
# pgvector is not packaged for PostgreSQL 15 in Debian bookworm, but Debian trixie's source
# package builds against it in seconds. Progress goes to stderr; stdout gets exactly one line.
# Environment: PGDATA_DIR (default /tmp/sidekick-pg), PGPORT_WANTED (default 54329).
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
DATA=${PGDATA_DIR:-/tmp/sidekick-pg}
PORT_WANTED=${PGPORT_WANTED:-54329}
say() { echo "real-postgres: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 server binaries not found in $PGBIN (apt-get install postgresql-15)"

as_postgres() { runuser -u postgres -- "$@"; }

if [ "${1:-}" = "stop" ]; then
  if [ -f "$DATA/PG_VERSION" ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$DATA" stop -m fast >&2 || true
    rm -rf "$DATA"
    say "stopped and removed $DATA"
  else
    say "no cluster in $DATA"
  fi
  exit 0
fi

apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { apt-get update -qq >&2 || die "apt-get update failed"; apt_updated=1; }; }

install_pgvector() {
  local ext=/usr/share/postgresql/15/extension/vector.control lib=/usr/lib/postgresql/15/lib/vector.so
  if [ -f "$ext" ] && [ -f "$lib" ]; then return; fi
  say "building pgvector for PostgreSQL 15 from Debian's source package"
  local need=()
  dpkg -s postgresql-server-dev-15 >/dev/null 2>&1 || need+=(postgresql-server-dev-15)
  dpkg -s dpkg-dev >/dev/null 2>&1 || need+=(dpkg-dev)
  command -v make >/dev/null || need+=(make)
  command -v gcc >/dev/null || need+=(gcc)
  if [ ${#need[@]} -gt 0 ]; then
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 || die "could not install ${need[*]}"
  fi
  # A deb-src line for trixie, from the mirror this machine already uses.
  local mirror
  mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$mirror" ] || mirror=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$mirror" ] || die "no Debian mirror found in the apt sources"
  local list=/etc/apt/sources.list.d/sidekick-trixie-src.list
  if [ ! -f "$list" ]; then
    echo "deb-src $mirror trixie main" > "$list"
    apt_updated=0
  fi
  apt_update
  local work
  work=$(mktemp -d)
  (cd "$work" && apt-get source -qq pgvector >&2) || die "apt-get source pgvector failed"
  local src
  src=$(find "$work" -maxdepth 1 -type d -name 'pgvector-*' | head -1)
  [ -n "$src" ] || die "pgvector source not found after apt-get source"
  make -C "$src" -s PG_CONFIG="$PGBIN/pg_config" OPTFLAGS="" >&2 || die "building pgvector failed"
  make -C "$src" -s PG_CONFIG="$PGBIN/pg_config" install >&2 || die "installing pgvector failed"
  rm -rf "$work"
  say "pgvector installed"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_pgvector

if [ -f "$DATA/PG_VERSION" ] && as_postgres "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  port=$(cat "$DATA/.port")
  say "reusing the running cluster in $DATA"
else
  rm -rf "$DATA"
  mkdir -p "$DATA"
  chown postgres:postgres "$DATA"
  as_postgres "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null 2>&1 || die "initdb failed"
  port=$PORT_WANTED
  while ! port_free "$port"; do port=$((port + 1)); done
  cat >> "$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$DATA'
max_connections = 200
shared_buffers = 256MB
maintenance_work_mem = 512MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' > "$DATA/pg_hba.conf"
  echo "$port" > "$DATA/.port"
  as_postgres "$PGBIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w start >&2 || die "server did not start (see $DATA/server.log)"
fi

for _ in $(seq 1 50); do
  "$PGBIN/pg_isready" -h 127.0.0.1 -p "$port" -q && break
  sleep 0.2
done
url="postgres://postgres@127.0.0.1:$port/postgres"
psql "$url" -qAt -c "CREATE EXTENSION IF NOT EXISTS vector" >&2 || die "pgvector does not load"
say "PostgreSQL $(psql "$url" -qAt -c 'show server_version') with pgvector $(psql "$url" -qAt -c "select extversion from pg_extension where extname='vector'") on port $port"
echo "STACK_POSTGRES_URL=$url"
