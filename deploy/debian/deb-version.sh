#!/bin/sh
# deb-version.sh VERSION: the Debian package version for an avfleet version
# as `git describe --tags --always --dirty` prints it. Debian versions must
# start with a digit and sort the way releases do, so:
#   v1.2.3                  -> 1.2.3
#   v1.2.3-rc.1             -> 1.2.3~rc.1          (sorts before 1.2.3)
#   v1.2.3-4-gabc1234       -> 1.2.3+4.gabc1234    (after 1.2.3)
#   v1.2.3-4-gabc1234-dirty -> 1.2.3+4.gabc1234.dirty
#   abc1234[-dirty], dev    -> 0.0.0~git.abc1234[.dirty], 0.0.0~dev (no tag yet)
set -eu
v=${1:?usage: deb-version.sh VERSION}
v=${v#v}
dirty=
case $v in *-dirty) dirty=.dirty v=${v%-dirty} ;; esac
if printf '%s\n' "$v" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+'; then
	base=$(printf '%s\n' "$v" | sed -E 's/^([0-9]+\.[0-9]+\.[0-9]+).*/\1/')
	rest=${v#"$base"}
	# git describe's "-N-gHASH" suffix: commits after the tag.
	after=$(printf '%s\n' "$rest" | sed -nE 's/.*-([0-9]+)-(g[0-9a-f]+)$/+\1.\2/p')
	rest=$(printf '%s\n' "$rest" | sed -E 's/-[0-9]+-g[0-9a-f]+$//')
	pre=
	if [ -n "$rest" ]; then
		pre="~$(printf '%s\n' "${rest#-}" | tr -c 'A-Za-z0-9.+~\n' '.')"
	fi
	out=$base$pre$after
	if [ -n "$dirty" ]; then
		case $out in *+*) out=$out$dirty ;; *) out=$out+dirty ;; esac
	fi
elif printf '%s\n' "$v" | grep -Eq '^[0-9a-f]{4,40}$'; then
	out=0.0.0~git.$v$dirty
else
	out=0.0.0~$(printf '%s\n' "$v" | tr -c 'A-Za-z0-9.+~\n' '.')$dirty
fi
printf '%s\n' "$out"
