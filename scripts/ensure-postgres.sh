#!/usr/bin/env bash
# Makes sure the PostgreSQL 15 server binaries that the end-to-end tests
# start a throwaway server from (internal/pgtest) are installed. Installs
# Debian's postgresql-15 only when they are missing; needs root (CI) for that.
#
# Environment:
#   SFB_PG_BINDIR  where the binaries are expected (default /usr/lib/postgresql/15/bin)
set -euo pipefail

bindir="${SFB_PG_BINDIR:-/usr/lib/postgresql/15/bin}"

if [[ -x "$bindir/postgres" && -x "$bindir/initdb" ]]; then
	echo "ensure-postgres: found $bindir/postgres" >&2
	exit 0
fi

if ! command -v apt-get >/dev/null; then
	echo "ensure-postgres: $bindir/postgres is missing and apt-get is not available; install PostgreSQL 15 server binaries and set SFB_PG_BINDIR" >&2
	exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null; then
		sudo=(sudo)
	else
		echo "ensure-postgres: $bindir/postgres is missing; run as root or install postgresql-15 yourself" >&2
		exit 1
	fi
fi

echo "ensure-postgres: installing postgresql-15" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
if [[ ! -x "$bindir/postgres" ]]; then
	echo "ensure-postgres: postgresql-15 installed but $bindir/postgres is still missing" >&2
	exit 1
fi
echo "ensure-postgres: installed $bindir/postgres" >&2
