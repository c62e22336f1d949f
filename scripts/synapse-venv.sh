#!/usr/bin/env bash
# Creates (once) and prints the path of a Python virtualenv with a pinned
# Synapse, for the end-to-end tests and the demo.
#
# The venv is cached under ${SFB_CACHE_DIR:-$HOME/.cache/sfb-matrix-bridge}
# and reused while its stamp file matches the pinned version, so reruns take
# milliseconds. It is built in a temporary directory and renamed into place,
# so an interrupted install never leaves a half-built venv behind that looks
# finished. Concurrent runs serialise on a lock file.
#
# Environment:
#   SFB_CACHE_DIR        cache root (default $HOME/.cache/sfb-matrix-bridge)
#   SFB_SYNAPSE_VERSION  Synapse version (default below; change with care)
#   PYTHON               interpreter to build the venv with (default python3)
set -euo pipefail

version="${SFB_SYNAPSE_VERSION:-1.163.2}"
python="${PYTHON:-python3}"
cache="${SFB_CACHE_DIR:-${HOME:?HOME is not set}/.cache/sfb-matrix-bridge}"
venv="$cache/synapse-$version"
stamp="$venv/.sfb-stamp"
want="matrix-synapse==$version"

log() { printf 'synapse-venv: %s\n' "$*" >&2; }

ready() { [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; }

if ready; then
	printf '%s\n' "$venv"
	exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.synapse-$version.lock"
if ! flock -w 1800 9; then
	log "timed out waiting for another install to finish ($cache/.synapse-$version.lock)"
	exit 1
fi
# Another process may have finished the install while we waited.
if ready; then
	printf '%s\n' "$venv"
	exit 0
fi

command -v "$python" >/dev/null || { log "$python not found; Synapse needs Python 3.10 or newer"; exit 1; }
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
	log "$python is $("$python" --version 2>&1); Synapse $version needs Python 3.10 or newer"
	exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
	log "$python lacks the venv/ensurepip modules (Debian: apt-get install python3-venv)"
	exit 1
fi

tmp="$(mktemp -d "$cache/.synapse-$version.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
log "installing $want into $venv (a few minutes on a cold cache)"
"$python" -m venv "$tmp"
"$tmp/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --upgrade pip >&2
"$tmp/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$want" >&2
# Fail here, not in the first test, when the install is unusable.
"$tmp/bin/python" -c 'import synapse.app.homeserver, synapse._scripts.generate_signing_key' >&2

# Entry-point scripts carry the temporary path in their shebang; point them
# at the final location. Everything of ours runs "bin/python -m ...", which
# does not depend on this, but a person using the venv by hand might.
for f in "$tmp"/bin/*; do
	if [[ -f "$f" && ! -L "$f" ]] && head -c 2 "$f" | grep -q '^#!' && head -n 1 "$f" | grep -qF "$tmp/"; then
		sed -i "1s|$tmp/|$venv/|" "$f"
	fi
done
printf '%s\n' "$want" >"$tmp/.sfb-stamp"

rm -rf "$venv"
mv "$tmp" "$venv"
trap - EXIT
log "installed $want in $((SECONDS - start))s"
printf '%s\n' "$venv"
