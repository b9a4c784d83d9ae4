#!/bin/sh
# mirror-sync.sh: the mirror's upstream sync against stock freshclam on the
# same upstream and the same updates: requests, bytes, full-CVD downloads
# and where each ends, for a complete cdiff chain, a chain with a gap, and
# a check when already current (see bench/mirror-sync/main.go).
#
# Everything is real: the avfleet binary (`mirror import`, `mirror serve`
# with upstream enabled, `mirror status --json`), Debian's freshclam, and
# ClamAV's test databases; the upstream is an in-process static server laid
# out like database.clamav.net. Takes under a minute. The result replaces the
# "Upstream sync" section of bench/RESULTS.md.
#
# Usage: bench/mirror-sync.sh          (from anywhere in the repository)
# Env:   NO_RESULTS=1 (print only), AVFLEET_CLAMAV_TESTDATA.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
for c in go freshclam; do
	command -v "$c" >/dev/null || { echo "mirror-sync.sh: $c is needed (apt-get install clamav-freshclam)" >&2; exit 2; }
done
TD=${AVFLEET_CLAMAV_TESTDATA:-$ROOT/../shared/testdata/clamav}
[ -f "$TD/test-6.cdiff" ] || { echo "mirror-sync.sh: ClamAV test databases not found in $TD (set AVFLEET_CLAMAV_TESTDATA)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/avfms-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "building avfleet" >&2
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$WORK/avfleet" ./cmd/avfleet)
(cd "$ROOT" && go build -o "$WORK/mirror-sync" ./bench/mirror-sync)

echo "running: 3 scenarios x (avfleet, freshclam)" >&2
"$WORK/mirror-sync" -avfleet "$WORK/avfleet" -testdata "$TD" -out "$WORK/section.md"
cat "$WORK/section.md"

if [ "${NO_RESULTS:-}" = "" ]; then
	RES="$ROOT/bench/RESULTS.md"
	BEGIN='<!-- mirror-sync:begin -->'
	END='<!-- mirror-sync:end -->'
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
