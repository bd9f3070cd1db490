#!/usr/bin/env bash
# Install what walrust needs on Debian 12 (as root, or through sudo).
#   contrib/deps.sh          build and runtime libraries
#   contrib/deps.sh --test   plus clang (sanitizers, libFuzzer) and Python venv
# Only packages that are missing are installed.
set -euo pipefail
pkgs=(build-essential autoconf automake libtool pkg-config
      libsqlite3-dev libuv1-dev libcurl4-openssl-dev libssl-dev liblz4-dev
      libjansson-dev libexpat1-dev libyaml-dev check sqlite3 curl ca-certificates)
if [ "${1:-}" = "--test" ]; then
	pkgs+=(clang libclang-rt-14-dev python3 python3-venv python3-pip openssl)
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	echo "installing: ${missing[*]}"
	$SUDO apt-get update -q
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
