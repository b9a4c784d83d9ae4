#!/bin/sh
# bench/scan.sh: `avfleet scan` against `clamdscan --multiscan --fdpass`, one
# run, the same clamd (test-6.cvd, MaxThreads = CPUs) and the same tree.
#
#   1. a tree of N files (default 20000), 100 B .. 5 MB (bench/scantree), read
#      once so that both tools find it in the page cache;
#   2. clamdscan --multiscan --fdpass, then avfleet scan (incremental cache
#      empty: every file is sent): throughput ratio, target >= 1.0;
#   3. avfleet scan again, nothing changed, same definitions: target >= 20x
#      faster than clamdscan; then one file is replaced by EICAR and the next
#      scan must find it (exit 1);
#   4. limits.cpu_percent: 25: clamd and avfleet scan in one cgroup made by
#      internal/agent/limits (bench/scanlimit), a full scan; the group's CPU
#      over the wall time must stay near 25% of one core.
#
# Needs root (cgroups), clamd, clamdscan and Go. Results replace the scan block
# of bench/RESULTS.md. WORK=dir keeps the tree between runs (it is reused when
# present); N=2000 for a quick try.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N=${N:-20000}
WORK=${WORK:-/tmp/avfleet-bench-scan}
TESTDATA=${AVFLEET_CLAMAV_TESTDATA:-$ROOT/../shared/testdata/clamav}
CLAMD=${CLAMD:-/usr/sbin/clamd}
THREADS=$(nproc)
mkdir -p "$WORK"
BIN=${AVFLEET_BIN:-$WORK/avfleet}
[ -n "${AVFLEET_BIN:-}" ] || CGO_ENABLED=0 go build -o "$BIN" ./cmd/avfleet
go build -o "$WORK/scantree" ./bench/scantree
go build -o "$WORK/scanlimit" ./bench/scanlimit

TREE=$WORK/tree-$N
if [ ! -d "$TREE" ]; then
	echo "writing $N files to $TREE"
	"$WORK/scantree" -n "$N" -seed 1 "$TREE.tmp" >/dev/null
	mv "$TREE.tmp" "$TREE"
fi
BYTES=$(du -sb "$TREE" | cut -f1)

# clamd with the test database, as the agent would run it.
rm -rf "$WORK/db" "$WORK/state" "$WORK/state25" "$WORK/clamd.sock"
mkdir -p "$WORK/db" "$WORK/state" "$WORK/state25"
cp "$TESTDATA/test-6.cvd" "$WORK/db/"
cat >"$WORK/clamd.conf" <<EOF
Foreground yes
LocalSocket $WORK/clamd.sock
DatabaseDirectory $WORK/db
TemporaryDirectory $WORK
LogTime no
LogSyslog no
SelfCheck 0
MaxThreads $THREADS
MaxQueue 200
IdleTimeout 60
DisableCache yes
EOF
"$CLAMD" --config-file="$WORK/clamd.conf" >"$WORK/clamd.log" 2>&1 &
CLAMD_PID=$!
trap 'kill $CLAMD_PID 2>/dev/null; wait $CLAMD_PID 2>/dev/null || true' EXIT INT TERM
i=0
until clamdscan --config-file="$WORK/clamd.conf" --ping 1 >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 60 ] || { echo "clamd did not start:"; cat "$WORK/clamd.log"; exit 2; }
	sleep 0.5
done

# The agent's view: external clamd, its database directory behind state_dir/db.
ln -s "$WORK/db" "$WORK/state/db"
ln -s "$WORK/db" "$WORK/state25/db"
cat >"$WORK/agent.yaml" <<EOF
state_dir: $WORK/state
clamd: {mode: external, socket: "unix://$WORK/clamd.sock", max_threads: $THREADS}
scan: {paths: ["$TREE"], exclude: [], incremental: true}
EOF
cat >"$WORK/agent25.yaml" <<EOF
state_dir: $WORK/state25
clamd: {mode: external, socket: "unix://$WORK/clamd.sock", max_threads: $THREADS}
scan: {paths: ["$TREE"], exclude: [], incremental: false}
limits: {cpu_percent: 25}
EOF

now() { date +%s.%N; }
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
secs() { echo "$1 $2" | awk '{printf "%.3f", $2 - $1}'; }

minof() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -g | head -1; }
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
CLK=$(getconf CLK_TCK)
clamdcpu() { awk -v clk="$CLK" '{printf "%.2f", ($14 + $15) / clk}' /proc/$CLAMD_PID/stat; }

find "$TREE" -type f -exec cat {} + >/dev/null # page cache
# clamd's first scan after it starts is slower (pools growing); not timed.
clamdscan --config-file="$WORK/clamd.conf" --multiscan --fdpass "$TREE" >/dev/null 2>&1 || true

# The machine is shared: ROUNDS alternating rounds; best and median count.
# clamd's own CPU per run shows both tools had it do the same work.
ROUNDS=${ROUNDS:-5}
CS_ALL="" FULL_ALL="" INCR_ALL="" CS_CPU="" FULL_CPU=""
for round in $(seq "$ROUNDS"); do
	c0=$(clamdcpu) t0=$(now)
	clamdscan --config-file="$WORK/clamd.conf" --multiscan --fdpass "$TREE" >"$WORK/clamdscan.out" 2>&1 || {
		echo "clamdscan failed:"; tail "$WORK/clamdscan.out"; exit 2; }
	t1=$(now) c1=$(clamdcpu)
	CS_ALL="$CS_ALL $(secs "$t0" "$t1")" CS_CPU="$CS_CPU $(secs "$c0" "$c1")"

	rm -f "$WORK/state/scan-cache.db" "$WORK/state/scan-cache.db-wal" "$WORK/state/scan-cache.db-shm"
	c0=$(clamdcpu) t0=$(now)
	"$BIN" scan --config "$WORK/agent.yaml" --no-progress "$TREE" >"$WORK/avfleet-full.out" 2>&1 || {
		echo "avfleet scan failed:"; tail "$WORK/avfleet-full.out"; exit 2; }
	t1=$(now) c1=$(clamdcpu)
	FULL_ALL="$FULL_ALL $(secs "$t0" "$t1")" FULL_CPU="$FULL_CPU $(secs "$c0" "$c1")"

	t0=$(now)
	"$BIN" scan --config "$WORK/agent.yaml" --no-progress "$TREE" >"$WORK/avfleet-incr.out" 2>&1 || {
		echo "avfleet scan (incremental) failed:"; tail "$WORK/avfleet-incr.out"; exit 2; }
	t1=$(now)
	INCR_ALL="$INCR_ALL $(secs "$t0" "$t1")"
	grep -q "^Scanned files: 0$" "$WORK/avfleet-incr.out" || { echo "incremental scan sent files:"; cat "$WORK/avfleet-incr.out"; exit 1; }
done
CLAMDSCAN=$(minof $CS_ALL) FULL=$(minof $FULL_ALL) INCR=$(minof $INCR_ALL)
CS_MED=$(median $CS_ALL) FULL_MED=$(median $FULL_ALL) INCR_MED=$(median $INCR_ALL)

CHANGED=$(find "$TREE" -type f | sort | sed -n "$((N / 2 + 1))p")
cp -p "$CHANGED" "$WORK/changed.orig"
printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$' 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' >"$CHANGED"
t0=$(now)
set +e
"$BIN" scan --config "$WORK/agent.yaml" --no-progress "$TREE" >"$WORK/avfleet-changed.out" 2>&1
CODE=$?
set -e
t1=$(now)
CHANGEDT=$(secs "$t0" "$t1")
if [ $CODE -ne 1 ] || ! grep -q "^$CHANGED: Eicar-Test-Signature FOUND" "$WORK/avfleet-changed.out"; then
	echo "the changed file was not found (exit $CODE):"; cat "$WORK/avfleet-changed.out"; exit 1
fi
CHANGED_SCANNED=$(sed -n 's/^Scanned files: //p' "$WORK/avfleet-changed.out")
cp -p "$WORK/changed.orig" "$CHANGED" # the tree as scantree wrote it, for the limited run and the next

"$WORK/scanlimit" -cpu-percent 25 -pid "$CLAMD_PID" -- \
	"$BIN" scan --config "$WORK/agent25.yaml" --no-progress "$TREE" >"$WORK/avfleet-25.out" 2>"$WORK/scanlimit.err" || {
	echo "limited scan failed:"; cat "$WORK/scanlimit.err"; tail "$WORK/avfleet-25.out"; exit 2; }
LIMITED=$(sed -n 's/.*wall_seconds=\([0-9.]*\) cpu_seconds=\([0-9.]*\) cpu_percent_of_one_core=\([0-9.]*\) periods=\([0-9]*\) throttled=\([0-9]*\).*/\1 \2 \3 \4 \5/p' "$WORK/scanlimit.err")
MODE=$(sed -n 's/.*mode=\([a-z0-9]*\).*/\1/p' "$WORK/scanlimit.err")

RATIO=$(echo "$CLAMDSCAN $FULL" | awk '{printf "%.2f", $1 / $2}')
RATIO_MED=$(echo "$CS_MED $FULL_MED" | awk '{printf "%.2f", $1 / $2}')
SPEEDUP=$(echo "$CLAMDSCAN $INCR" | awk '{printf "%.1f", $1 / $2}')
SPEEDUP_MED=$(echo "$CS_MED $INCR_MED" | awk '{printf "%.1f", $1 / $2}')
MB=$(echo "$BYTES" | awk '{printf "%.0f", $1 / 1048576}')
{
	echo "## Scanning (bench/scan.sh) — $(date -u +%Y-%m-%d), $(uname -n), $THREADS CPUs, clamd $("$CLAMD" --version | cut -d/ -f1)"
	echo
	echo "Tree: $N files, $MB MiB (bench/scantree -seed 1: 100 B .. 5 MB), in the page cache. One clamd"
	echo "(test-6.cvd, MaxThreads $THREADS, DisableCache yes so that no run profits from an earlier one's"
	echo "clean-file cache) for every run; avfleet: $THREADS files scanned at once, $((2 * THREADS + 2)) in flight. $ROUNDS alternating rounds; seconds"
	echo "of each: clamdscan$CS_ALL; avfleet$FULL_ALL; incremental$INCR_ALL. clamd's CPU seconds"
	echo "per run: under clamdscan$CS_CPU; under avfleet$FULL_CPU. Load average before: $LOAD."
	echo
	echo "| run | best s | median s | MB/s (best) | vs clamdscan (best; median) |"
	echo "|---|---|---|---|---|"
	echo "| \`clamdscan --multiscan --fdpass TREE\` | $CLAMDSCAN | $CS_MED | $(echo "$BYTES $CLAMDSCAN" | awk '{printf "%.0f", $1/1048576/$2}') | 1.00x |"
	echo "| \`avfleet scan --config agent.yaml TREE\` (cache empty: all files sent) | $FULL | $FULL_MED | $(echo "$BYTES $FULL" | awk '{printf "%.0f", $1/1048576/$2}') | **${RATIO}x**; ${RATIO_MED}x throughput (target >= 1.0) |"
	echo "| same, again, nothing changed (incremental) | $INCR | $INCR_MED | — | **${SPEEDUP}x**; ${SPEEDUP_MED}x faster (target >= 20) |"
	echo "| same, one file replaced by EICAR | $CHANGEDT | | — | found, exit 1; files sent to clamd: $CHANGED_SCANNED |"
	echo
	set -- $LIMITED
	echo "limits.cpu_percent: 25 ($MODE, clamd and avfleet scan in one group, 1 file scanned at once, 4 in flight): full scan in"
	echo "$1 s using $2 s of CPU = **$3% of one core** (target: near 25; a ceiling: on a loaded machine the"
	echo "group gets less). The quota held the group back in $5 of the $4 accounting periods it ran in."
	echo
	echo "Commands: \`N=$N sh bench/scan.sh\` (clamd --config-file=clamd.conf with the lines above;"
	echo "clamdscan --config-file=clamd.conf --multiscan --fdpass TREE; avfleet scan --config agent.yaml --no-progress TREE;"
	echo "scanlimit -cpu-percent 25 -pid CLAMD -- avfleet scan --config agent25.yaml --no-progress TREE)."
} >"$WORK/results.md"
cat "$WORK/results.md"

# Replace this script's block in bench/RESULTS.md (other scripts keep theirs).
{ echo "<!-- scan:begin -->"; cat "$WORK/results.md"; echo "<!-- scan:end -->"; } >"$WORK/block.md"
if grep -q '^<!-- scan:begin -->$' bench/RESULTS.md; then
	awk -v blk="$WORK/block.md" '
		/^<!-- scan:begin -->$/ { while ((getline l < blk) > 0) print l; skip = 1; next }
		/^<!-- scan:end -->$/ { skip = 0; next }
		!skip' bench/RESULTS.md >"$WORK/RESULTS.new"
	cat "$WORK/RESULTS.new" >bench/RESULTS.md
else
	{ echo; cat "$WORK/block.md"; } >>bench/RESULTS.md
fi
