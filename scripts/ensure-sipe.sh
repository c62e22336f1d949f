#!/usr/bin/env bash
# Makes sure a real SfB client can run for the interop tests
# (internal/pidginsipe, e2e/sipe_test.go): Debian's pidgin-sipe in finch
# (libpurple's terminal client) under tmux, driven over libpurple's D-Bus
# API with dbus-daemon, dbus-send and dbus-monitor, plus a C compiler and
# libxml2's headers for the shim that lets Debian 12's pidgin-sipe parse
# XML (internal/pidginsipe/shim/xmlsax1.c). Installs what is missing; needs
# root (CI) for that. Prints the versions of pidgin-sipe and finch.
set -euo pipefail

missing=()
need() { # need PACKAGE TEST...
	local pkg="$1"
	shift
	if ! "$@" >/dev/null 2>&1; then
		missing+=("$pkg")
	fi
}
need pidgin-sipe test -e /usr/lib/purple-2/libsipe.so
need finch command -v finch
need tmux command -v tmux
need dbus-daemon command -v dbus-daemon
need dbus-bin command -v dbus-send
need dbus-bin command -v dbus-monitor
need gcc command -v cc
need libc6-dev test -e /usr/include/stdio.h
need libxml2-dev test -e /usr/include/libxml2/libxml/parser.h

if ((${#missing[@]})); then
	# dbus-bin is named twice when both tools are missing.
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	bash "$(dirname "$0")/apt-install.sh" ensure-sipe "${missing[@]}"
fi
dpkg-query -W -f '${Package} ${Version}\n' pidgin-sipe finch
