#!/bin/sh
# run.sh: every benchmark in bench/, one after another (`make bench`). Each
# script compares avfleet with its reference tool in the same run and
# rewrites its own section of bench/RESULTS.md. Name scripts to run only some:
#   bench/run.sh cvd-verify scan
set -eu
cd "$(dirname "$0")"
if [ $# -eq 0 ]; then
	set -- cvd-verify mirror-sync mirror-serve propagation scan
fi
failed=""
for b in "$@"; do
	echo "=== bench/$b.sh"
	if ! "./$b.sh"; then
		echo "bench/$b.sh failed" >&2
		failed="$failed $b"
	fi
done
if [ -n "$failed" ]; then
	echo "failed:$failed" >&2
	exit 1
fi
