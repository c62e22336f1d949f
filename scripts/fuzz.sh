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
		continue
	fi
	# Go before 1.27 can fail a target with a bare "context deadline
	# exceeded" when -fuzztime ends while a worker is busy (a race in the
	# fuzzing coordinator, go.dev/issue/75804), especially on a loaded
	# machine. That is not a finding: no failing input is written. Accept
	# it only when nothing was written and the whole corpus (seeds plus
	# testdata/fuzz) still passes as a plain test.
	if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written to' <<<"$out"; then
		if "$go" test -tags "$tags" -run "^${name}\$" "$pkg" >/dev/null 2>&1; then
			echo "ok    $pkg $name ($((SECONDS - start))s; Go fuzzing coordinator deadline race, no failing input, corpus passes)"
			continue
		fi
	fi
	echo "FAIL  $pkg $name"
	printf '%s\n' "$out" | tail -n 40
	failed=1
done
exit "$failed"
