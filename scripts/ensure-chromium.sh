#!/usr/bin/env bash
# Makes sure Debian's chromium is installed, for the dashboard's browser
# test (e2e/dashboard_test.go), and prints the browser's path. Installs the
# package only when it is missing; needs root (CI) for that. The browser
# always comes from the distribution's packages, never from a download by a
# Go tool.
#
# Environment:
#   SFB_CHROMIUM  a browser to use instead (printed as is when executable)
set -euo pipefail

find_browser() {
	local c
	for c in "${SFB_CHROMIUM:-}" chromium chromium-browser /usr/bin/chromium; do
		[[ -n "$c" ]] || continue
		if command -v "$c" >/dev/null; then
			command -v "$c"
			return 0
		fi
	done
	return 1
}

if find_browser; then
	exit 0
fi

if ! command -v apt-get >/dev/null; then
	echo "ensure-chromium: chromium is missing and apt-get is not available; install Chromium and set SFB_CHROMIUM" >&2
	exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null; then
		sudo=(sudo)
	else
		echo "ensure-chromium: chromium is missing; run as root or install Debian's chromium package yourself" >&2
		exit 1
	fi
fi

echo "ensure-chromium: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
if ! find_browser; then
	echo "ensure-chromium: chromium installed but not found on PATH" >&2
	exit 1
fi
