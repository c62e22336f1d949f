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

bash "$(dirname "$0")/apt-install.sh" ensure-postgres postgresql-15
if [[ ! -x "$bindir/postgres" ]]; then
	echo "ensure-postgres: postgresql-15 installed but $bindir/postgres is still missing" >&2
	exit 1
fi
echo "ensure-postgres: installed $bindir/postgres" >&2
