#!/usr/bin/env bash
# Installs Debian packages the tests need, for the scripts that find them
# missing (ensure-postgres.sh, ensure-chromium.sh, ensure-sipe.sh). Needs root,
# or sudo.
#
# Usage: apt-install.sh WHO PACKAGE...   (WHO prefixes the messages)
set -euo pipefail

who="$1"
shift
if ! command -v apt-get >/dev/null; then
	echo "$who: $* missing and apt-get is not available; install it yourself" >&2
	exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if ! command -v sudo >/dev/null; then
		echo "$who: $* missing; run as root or install it yourself" >&2
		exit 1
	fi
	sudo=(sudo)
fi
echo "$who: installing $*" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
