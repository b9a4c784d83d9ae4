#!/bin/sh
# fuzz.sh: run every fuzz target in the module for FUZZTIME each (default
# 30s), one at a time (go test -fuzz takes one target per run). A crash stops
# the run and leaves the failing input in the package's testdata/fuzz/.
#   bench/fuzz.sh 10m            every target for ten minutes
#   bench/fuzz.sh 1m ./internal/cvd/
set -eu
cd "$(dirname "$0")/.."
t=${1:-30s}
shift 2>/dev/null || true
pkgs=${*:-./...}
for pkg in $(go list $pkgs); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "=== $pkg $f ($t)"
		go test -run='^$' -fuzz="^$f\$" -fuzztime="$t" "$pkg"
	done
done
