#!/usr/bin/env bash
# Build every libFuzzer harness (tests/fuzz/fuzz-*.c) with clang, ASan and
# UBSan, and run each for a bounded time over its seed corpus.
#   tests/fuzz/run.sh [SECONDS] [OUTDIR]
# Prints one TAP line per harness; exits non-zero if any harness failed.
set -u
cd "$(dirname "$0")/../.."
secs=${1:-30}
out=${2:-build/fuzz}
mkdir -p "$out"
cfg=$(mktemp -d)
printf '#define _GNU_SOURCE 1\n#define PACKAGE_VERSION "fuzz"\n' > "$cfg/config.h"
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$cfg -Idaemon -Iproto"
libs="$(pkg-config --libs liblz4 jansson expat libcrypto yaml-0.1)"
n=0 fail=0
for src in tests/fuzz/fuzz-*.c; do
	name=$(basename "$src" .c)
	target=${name#fuzz-}
	n=$((n + 1))
	deps="daemon/util.c daemon/crc64.c daemon/ltx.c daemon/wal.c daemon/s3-xml.c daemon/sigv4.c daemon/config.c proto/wrp.c"
	corpus="tests/fuzz/corpus/$target"
	mkdir -p "$out/corpus-$target"
	if ! clang $flags "$src" $deps $libs -o "$out/$name" 2>"$out/$name.build.log"; then
		echo "not ok $n - $name (build failed, see $out/$name.build.log)"
		fail=$((fail + 1))
		continue
	fi
	if "$out/$name" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
		"$out/corpus-$target" ${corpus:+$( [ -d "$corpus" ] && echo "$corpus")} \
		>"$out/$name.log" 2>&1; then
		echo "ok $n - $name ($(grep -o 'Done [0-9]* runs' "$out/$name.log" | tail -1))"
	else
		echo "not ok $n - $name (see $out/$name.log)"
		tail -30 "$out/$name.log" | sed 's/^/# /'
		fail=$((fail + 1))
	fi
done
rm -rf "$cfg"
echo "1..$n"
[ "$fail" -eq 0 ]
