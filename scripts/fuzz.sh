#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time each.
#
# Targets are discovered with "go test -list" so new ones are picked up
# without editing this script. A crash fails the run, and "go test" saves the
# failing input under the package's testdata/fuzz/ for a regression test.
#
# Usage: scripts/fuzz.sh [fuzztime] [packages...]   (default 10s ./...)
set -euo pipefail

fuzztime="${1:-10s}"
shift || true
pkgs=("${@:-./...}")
go="${GO:-go}"
tags="${GOTAGS:-goolm}"

# "go test -list" prints the matching names of each package, then a line
# "ok <package> <time>" (or "?" for packages without tests).
listing="$("$go" test -tags "$tags" -run '^$' -list '^Fuzz' "${pkgs[@]}")"
targets=()
names=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*) names+=("$line") ;;
	"ok "*)
		pkg="$(awk '{print $2}' <<<"$line")"
		for n in "${names[@]}"; do targets+=("$pkg $n"); done
		names=()
		;;
	*) names=() ;;
	esac
done <<<"$listing"

if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz: no fuzz targets found"
	exit 0
fi
echo "fuzz: ${#targets[@]} targets, $fuzztime each"
failed=0
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	start=$SECONDS
	if out="$("$go" test -tags "$tags" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1)"; then
		echo "ok    $pkg $name ($((SECONDS - start))s)"
	else
		echo "FAIL  $pkg $name"
		printf '%s\n' "$out" | tail -n 40
		failed=1
	fi
done
exit "$failed"
