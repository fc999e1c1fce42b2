#!/usr/bin/env bash
# Runs the whole test suite: every crate's tests and the end-to-end tests, against the
# embedded backends (SQLite, in-memory, in-process bus) and against PostgreSQL + NATS.
#
# PostgreSQL and NATS are started if they are installed but stopped; if either is
# missing, this fails with a message saying what to install. Override their addresses
# with CHORUS_TEST_DATABASE_URL (postgres://user@host:port, no database name) and
# CHORUS_TEST_NATS_URL (nats://host:port).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_url="${CHORUS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
nats_url="${CHORUS_TEST_NATS_URL:-nats://127.0.0.1:4222}"
pg_hostport="${pg_url##*@}"; pg_hostport="${pg_hostport%%/*}"
nats_hostport="${nats_url#nats://}"

reachable() { # host:port
  timeout 2 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null
}

wait_for() { # name host:port
  for _ in $(seq 1 50); do
    reachable "$2" && return 0
    sleep 0.2
  done
  echo "error: $1 did not come up at $2" >&2
  exit 1
}

if ! reachable "$pg_hostport"; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL ..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    wait_for PostgreSQL "$pg_hostport"
  else
    echo "error: PostgreSQL is not reachable at $pg_hostport and is not installed." >&2
    echo "       Install it (apt-get install postgresql) with trust auth for user postgres," >&2
    echo "       or point CHORUS_TEST_DATABASE_URL at a server." >&2
    exit 1
  fi
fi

if ! reachable "$nats_hostport"; then
  if [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1; then
    echo "starting NATS ..."
    nats_bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
    mkdir -p /var/lib/nats-server 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec "$nats_bin" -- \
      -a 127.0.0.1 -p "${nats_hostport##*:}" -js -sd /var/lib/nats-server
    wait_for NATS "$nats_hostport"
  else
    echo "error: NATS is not reachable at $nats_hostport and nats-server is not installed." >&2
    echo "       Install it (apt-get install nats-server) or point CHORUS_TEST_NATS_URL at a server." >&2
    exit 1
  fi
fi

# The conformance suite (tests/conformance) runs real discord.py and discord.js bots:
# install their pinned versions into project-local folders (again only when the pins
# change).
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "error: python3 with venv and ensurepip is needed for the discord.py conformance test." >&2
  echo "       Install it (apt-get install python3 python3-venv)." >&2
  exit 1
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1 \
  || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
  echo "error: node >= 18 and npm are needed for the discord.js conformance test." >&2
  echo "       Install them (apt-get install nodejs npm)." >&2
  exit 1
fi
venv=target/conformance/venv
requirements=conformance/python/requirements.txt
if ! [ -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
  echo "installing discord.py into $venv ..."
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
if ! cmp -s conformance/js/package-lock.json conformance/js/node_modules/.chorus-lock.json; then
  echo "installing discord.js into conformance/js/node_modules ..."
  (cd conformance/js && npm ci --no-audit --no-fund --loglevel=error)
  cp conformance/js/package-lock.json conformance/js/node_modules/.chorus-lock.json
fi

# Voice: the browser test (tests/e2e/voice.rs) drives headless Chromium, and str0m builds
# against the system OpenSSL.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium ..."
    apt-get install -y chromium >/dev/null 2>&1 \
      || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    echo "error: chromium is needed for the voice browser test (apt-get install chromium)." >&2
    exit 1
  fi
fi
if ! pkg-config --exists openssl 2>/dev/null; then
  echo "error: OpenSSL headers are needed to build voice/ (apt-get install libssl-dev pkg-config)." >&2
  exit 1
fi

# Every PostgreSQL test makes a database of its own (chorus_*). When the run ends, pass or
# fail, drop the ones it made, so that repeated runs do not fill the disk. A database
# that is still in use (another run's) cannot be dropped without FORCE and is left alone.
chorus_databases() {
  psql "$pg_url/postgres" -XAtq \
    -c "SELECT datname FROM pg_database WHERE datname LIKE 'chorus\_%'" | sort
}
if command -v psql >/dev/null 2>&1 && databases_before="$(chorus_databases)"; then
  drop_databases_made_by_this_run() {
    local name
    comm -13 <(printf '%s\n' "$databases_before") <(chorus_databases) | while read -r name; do
      psql "$pg_url/postgres" -XAtq -c "DROP DATABASE IF EXISTS \"$name\"" >/dev/null 2>&1 || true
    done
  }
  trap drop_databases_made_by_this_run EXIT
else
  echo "note: psql is missing or cannot list databases; the test databases (chorus_*) this" >&2
  echo "      run makes stay behind." >&2
fi

export CHORUS_TEST_DATABASE_URL="$pg_url" CHORUS_TEST_NATS_URL="$nats_url"
cargo test --workspace "$@"
