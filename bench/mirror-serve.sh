#!/bin/sh
# mirror-serve.sh: the mirror's HTTPS serving path under load (see
# bench/mirror-serve/main.go, the load generator this builds and runs).
#
#   1. 1,000 concurrent mutual-TLS clients, one HTTP/1.1 keep-alive
#      connection each, doing up-to-date checks for a minute (manifest with
#      If-None-Match, /{db}.cvd with If-Modified-Since, both 304): errors,
#      latency percentiles, bytes per check on the wire (counted under TLS)
#      and the handshake's bytes. Targets: zero errors, a check < 1 KB.
#   2. a CVD of at least 100 MiB (`avfleet cvd build` from generated data,
#      imported with trust.cvd_keys) downloaded by 50 parallel clients over
#      mutual TLS from `avfleet mirror serve` and from Debian's nginx
#      (nginx-light, installed with apt-get when missing; run as root with
#      its own prefix, pid and logs; same certificates, ssl_verify_client
#      on, serving the same file), alternating rounds, same load generator.
#      Target: avfleet >= 0.9 x nginx.
#
# Both servers and the load generator share this machine's cores. Takes
# about 6 minutes (plus a minute the first time, to build the CVD). The
# result replaces the "mirror serve" section of bench/RESULTS.md.
#
# Usage: bench/mirror-serve.sh            (from anywhere in the repository)
# Env:   BENCH_DIR (default /tmp/avfleet-bench-serve; the CVD is kept there
#        between runs), NO_RESULTS=1 (print only), NO_NGINX=1 (avfleet only),
#        ARGS (extra flags for the load generator, e.g. "-dl-rounds 5").
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/avfleet-bench-serve}
command -v go >/dev/null || { echo "mirror-serve.sh: go is needed" >&2; exit 2; }

NGINX=""
if [ "${NO_NGINX:-}" = "" ]; then
	if ! [ -x /usr/sbin/nginx ]; then
		if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
			echo "mirror-serve.sh: nginx is needed for the comparison: apt-get install nginx-light (or NO_NGINX=1)" >&2
			exit 2
		fi
		echo "installing nginx-light with apt-get (its own service is not started)" >&2
		# policy-rc.d 101: the package's init script must not start a
		# system nginx on port 80 behind our back.
		PRC=/usr/sbin/policy-rc.d
		ADDED=""
		if [ ! -e "$PRC" ]; then
			printf '#!/bin/sh\nexit 101\n' > "$PRC" && chmod 755 "$PRC" && ADDED=1
		fi
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null || {
			[ -n "$ADDED" ] && rm -f "$PRC"
			echo "mirror-serve.sh: apt-get install nginx-light failed" >&2
			exit 2
		}
		[ -n "$ADDED" ] && rm -f "$PRC"
	fi
	NGINX=/usr/sbin/nginx
	[ "$(id -u)" = 0 ] || { echo "mirror-serve.sh: run as root for the nginx comparison (or NO_NGINX=1)" >&2; exit 2; }
fi

# 1,000 client connections in the load generator and as many in the server,
# plus files: raise the descriptor limit for both (inherited).
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 4096 ] || { echo "mirror-serve.sh: ulimit -n is $(ulimit -n); 4096 or more is needed" >&2; exit 2; }

mkdir -p "$BENCH_DIR"
echo "building avfleet and the load generator" >&2
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$BENCH_DIR/avfleet" ./cmd/avfleet)
(cd "$ROOT" && go build -o "$BENCH_DIR/mirror-serve" ./bench/mirror-serve)

"$BENCH_DIR/mirror-serve" -avfleet "$BENCH_DIR/avfleet" -nginx "$NGINX" -work "$BENCH_DIR" -out "$BENCH_DIR/body.md" ${ARGS:-}

NGINX_V=""
[ -n "$NGINX" ] && NGINX_V=", $($NGINX -v 2>&1 | sed 's/^nginx version: //') with $(openssl version 2>/dev/null | cut -d' ' -f1-2)"
{
	echo "## Mirror serving over mutual TLS (bench/mirror-serve.sh)"
	echo
	echo "Last run: $(date -u +"%Y-%m-%d %H:%M UTC"), $(nproc) x $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(go version | cut -d' ' -f3)$NGINX_V."
	echo "Command: \`bench/mirror-serve.sh\`${ARGS:+ with ARGS=\"$ARGS\"}. Server, nginx and load generator share the machine's cores (and other work running on it)."
	echo
	cat "$BENCH_DIR/body.md"
} > "$BENCH_DIR/section.md"
cat "$BENCH_DIR/section.md"

if [ "${NO_RESULTS:-}" = "" ]; then
	RES="$ROOT/bench/RESULTS.md"
	BEGIN='<!-- mirror-serve:begin -->'
	END='<!-- mirror-serve:end -->'
	{
		if grep -q "$BEGIN" "$RES"; then
			sed "/$BEGIN/,\$d" "$RES"
		else
			cat "$RES"
			echo
		fi
		echo "$BEGIN"
		cat "$BENCH_DIR/section.md"
		echo "$END"
		if grep -q "$END" "$RES"; then
			sed "1,/$END/d" "$RES"
		fi
	} >"$BENCH_DIR/RESULTS.md"
	cp "$BENCH_DIR/RESULTS.md" "$RES"
	echo "updated $RES" >&2
fi
