#!/usr/bin/env bash
# walrust quick start on Debian 12: install what is missing, build, then run
# walrust's main job once against a replica:
#   contrib/quickstart.sh [DATABASE] [REPLICA-URL]
# DATABASE defaults to a demo database this script creates and keeps
# writing to; REPLICA-URL defaults to $WALRUST_BUCKET, else a local
# directory replica (file://$HOME/.local/share/walrust/replica). For S3 set
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL_S3 for
# non-AWS stores) and pass s3://bucket[/prefix].
# It starts walrustd, snapshots the database while a writer commits, lists
# the replica, restores the snapshot next to it and checks the restore.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
contrib/deps.sh
[ -x configure ] || ./bootstrap
mkdir -p build
curl_flag=
if contrib/libcurl-minimal.sh "$top/build/curl"; then
	curl_flag="--with-curl=$top/build/curl --enable-static-deps"
else
	echo "warning: building against the system libcurl" >&2
fi
(cd build && { [ -f Makefile ] || ../configure -q $curl_flag CFLAGS="-O2 -g"; } && make -s -j"$(nproc)")
wd="$top/build/quickstart"
mkdir -p "$wd"
db=${1:-$wd/demo.db}
replica=${2:-${WALRUST_BUCKET:-file://${XDG_DATA_HOME:-$HOME/.local/share}/walrust/replica}}
export WALRUST_SOCKET="$wd/walrustd.sock"
ctl() { build/client/walrustctl -b "$replica" "$@"; }

build/daemon/walrustd --replica "$replica" 2>"$wd/walrustd.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; [ -n "${writer:-}" ] && kill $writer 2>/dev/null; true' EXIT
for _ in $(seq 50); do ctl hello >/dev/null 2>&1 && break; sleep 0.1; done
ctl hello

writer=
if [ -z "${1:-}" ]; then
	rm -f "$db" "$db-wal" "$db-shm"
	sqlite3 "$db" "PRAGMA journal_mode=WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000)
		INSERT INTO notes(body) SELECT hex(randomblob(64)) FROM n;" >/dev/null
	( while sleep 0.05; do sqlite3 "$db" "INSERT INTO notes(body) VALUES (hex(randomblob(64)))" 2>/dev/null || true; done ) &
	writer=$!
	echo "demo database $db with a writer committing 20 times a second"
fi

echo "--- snapshot"
ctl snapshot "$db"
echo "--- list"
ctl list
name=$(basename "$db"); name=${name%.*}
out="$wd/restored-$name.db"
echo "--- restore"
ctl restore "$name" "$out" --force
echo "--- check"
sqlite3 "$out" "PRAGMA integrity_check; SELECT count(*) || ' rows in notes' FROM notes;" 2>/dev/null ||
	sqlite3 "$out" "PRAGMA integrity_check;"
echo "done: the replica is $replica; walrustd's log is $wd/walrustd.log"
