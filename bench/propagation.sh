#!/bin/sh
# propagation.sh: how fast and how cheaply new definitions reach nodes.
#
#   1. import to detection: `avfleet mirror import` of a new cdiff until the
#      agent's clamd detects what it added; median and p99 over RUNS runs
#      (target under 5 s);
#   2. FLEET updaters against one mirror on loopback: all at the new version
#      within 10 s of the import, none fetching a full database;
#   3. bytes per node for that update against a full download;
#   4. resident memory of an idle agent (target under 30 MB) and its clamd.
#
# Everything is real: the avfleet binary (mirror serve, mirror import, agent
# run with a managed clamd), mutual TLS with certificates made for the run,
# ClamAV's test databases and cdiffs. The result replaces the "Definitions
# propagation" section of bench/RESULTS.md.
#
# Usage: bench/propagation.sh            (from anywhere in the repository)
# Env:   RUNS (default 20), FLEET (default 200), NO_RESULTS=1 (print only),
#        AVFLEET_CLAMAV_TESTDATA (default ../shared/testdata/clamav).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-20}
FLEET=${FLEET:-200}
for c in go clamd; do
	command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || { echo "propagation.sh: $c is needed (apt-get install clamav-daemon)" >&2; exit 2; }
done
TD=${AVFLEET_CLAMAV_TESTDATA:-$ROOT/../shared/testdata/clamav}
[ -f "$TD/test-6.cdiff" ] || { echo "propagation.sh: ClamAV test databases not found in $TD (set AVFLEET_CLAMAV_TESTDATA)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/avfp-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "building avfleet" >&2
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$WORK/avfleet" ./cmd/avfleet)
(cd "$ROOT" && go build -o "$WORK/propagation" ./bench/propagation)

echo "running: $RUNS propagation runs, a fleet of $FLEET (a few minutes)" >&2
"$WORK/propagation" -avfleet "$WORK/avfleet" -testdata "$TD" -runs "$RUNS" -fleet "$FLEET" -out "$WORK/section.md"
cat "$WORK/section.md"

if [ "${NO_RESULTS:-}" = "" ]; then
	RES="$ROOT/bench/RESULTS.md"
	BEGIN='<!-- propagation:begin -->'
	END='<!-- propagation:end -->'
	{
		if grep -q "$BEGIN" "$RES"; then
			sed "/$BEGIN/,\$d" "$RES"
		else
			cat "$RES"
			echo
		fi
		echo "$BEGIN"
		cat "$WORK/section.md"
		echo "$END"
		if grep -q "$END" "$RES"; then
			sed "1,/$END/d" "$RES"
		fi
	} >"$WORK/RESULTS.md"
	cp "$WORK/RESULTS.md" "$RES"
	echo "updated $RES" >&2
fi
