#!/bin/sh
# build-deb.sh BINARY VERSION OUTDIR: build OUTDIR/avfleet_<debversion>_<arch>.deb
# from a static avfleet binary with nfpm, run as a Go tool from the separate
# module deploy/tools (so nfpm stays out of avfleet's go.mod). No Docker.
# Prints the path of the package. `make deb` calls it; so does the test.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:?usage: build-deb.sh BINARY VERSION OUTDIR}
version=${2:?usage: build-deb.sh BINARY VERSION OUTDIR}
out=${3:?usage: build-deb.sh BINARY VERSION OUTDIR}
go=${GO:-go}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
case $out in /*) ;; *) out=$PWD/$out ;; esac
[ -x "$bin" ] || { echo "build-deb.sh: $bin is not an executable (run make build)" >&2; exit 2; }

debver=$("$root/deploy/debian/deb-version.sh" "$version")
arch=${DEB_ARCH:-$("$go" env GOARCH)}
nfpm=$root/bin/nfpm
"$go" build -C "$root/deploy/tools" -o "$nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm

mkdir -p "$out"
target=$out/avfleet_${debver}_${arch}.deb
cd "$root"
AVFLEET_BIN=$bin DEB_VERSION=$debver DEB_ARCH=$arch \
	"$nfpm" package --config deploy/debian/nfpm.yaml --packager deb --target "$target" >&2
echo "$target"
