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

bash "$(dirname "$0")/apt-install.sh" ensure-chromium chromium
if ! find_browser; then
	echo "ensure-chromium: chromium installed but not found on PATH" >&2
	exit 1
fi
