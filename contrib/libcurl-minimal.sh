#!/usr/bin/env bash
# Build the small libcurl that walrust-worker links by default:
#   contrib/libcurl-minimal.sh PREFIX
# then configure walrust with --with-curl=PREFIX.
#
# Why: Debian's libcurl4-openssl is built for every protocol curl speaks,
# so loading it maps gnutls (through librtmp), krb5, LDAP, SASL, libssh2,
# nghttp2, libidn2, libpsl, brotli and zstd into every worker: about 4 MiB
# of resident memory per process and a lot of code that a process holding
# S3 credentials never needs. walrust speaks HTTP/1.1 and HTTPS only, so it
# links a static libcurl with exactly that: HTTP and HTTPS (OpenSSL, the
# system's shared libssl/libcrypto, so OpenSSL security updates still come
# from Debian), proxies, IPv6 and the threaded resolver; nothing else.
# Measured with one watched database: walrust-worker 13.0 -> 8.7 MiB RSS.
#
# The source is curl's release tarball as Debian's archive carries it,
# checked against a pinned SHA-256. Idempotent (a stamp file in PREFIX);
# exits non-zero when the source cannot be fetched, and the callers
# (contrib/quickstart.sh, tests/run) then build against the system
# libcurl instead. WALRUST_CURL_TARBALL=FILE uses a local copy.
set -euo pipefail
prefix=${1:?usage: contrib/libcurl-minimal.sh PREFIX}
version=8.14.1
sha256=6766ada7101d292b42b8b15681120acd68effa4a9660935853cf6d61f0d984d4
url=http://deb.debian.org/debian/pool/main/c/curl/curl_${version}.orig.tar.gz
stamp="$prefix/.walrust-curl-$version"
[ -f "$stamp" ] && exit 0

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/walrust-curl.XXXXXX")
trap 'rm -rf "$work"' EXIT
tarball=${WALRUST_CURL_TARBALL:-$work/curl.tar.gz}
if [ -z "${WALRUST_CURL_TARBALL:-}" ]; then
	echo "libcurl-minimal: fetching curl $version from $url"
	curl -fsSL --retry 3 -o "$tarball" "$url" || {
		echo "libcurl-minimal: cannot fetch $url" >&2
		exit 1
	}
fi
echo "$sha256  $tarball" | sha256sum -c --quiet - || {
	echo "libcurl-minimal: $tarball does not have the pinned SHA-256" >&2
	exit 1
}
tar -xzf "$tarball" -C "$work"
cd "$work/curl-$version"
echo "libcurl-minimal: configuring (HTTP and HTTPS over OpenSSL only)"
./configure --quiet --prefix="$prefix" --disable-shared --enable-static \
	--with-pic --with-openssl --disable-openssl-auto-load-config \
	--enable-http --enable-proxy --enable-ipv6 --enable-threaded-resolver \
	--enable-symbol-hiding --disable-dependency-tracking \
	--disable-ftp --disable-file --disable-ldap --disable-ldaps \
	--disable-rtsp --disable-dict --disable-telnet --disable-tftp \
	--disable-pop3 --disable-imap --disable-smb --disable-smtp \
	--disable-gopher --disable-mqtt --disable-ipfs --disable-websockets \
	--disable-manual --disable-docs --disable-libcurl-option \
	--disable-ntlm --disable-kerberos-auth --disable-negotiate-auth \
	--disable-tls-srp --disable-aws --disable-alt-svc --disable-hsts \
	--disable-cookies --disable-doh --disable-mime --disable-form-api \
	--disable-netrc --disable-progress-meter \
	--without-zlib --without-brotli --without-zstd --without-libpsl \
	--without-libidn2 --without-nghttp2 --without-librtmp \
	--without-libssh2 --without-libssh --without-ngtcp2 \
	--without-nghttp3 --without-gssapi >"$work/configure.log" 2>&1 || {
	tail -30 "$work/configure.log" >&2
	exit 1
}
echo "libcurl-minimal: building"
make -s -j"$(nproc)" -C lib >"$work/make.log" 2>&1 || {
	tail -30 "$work/make.log" >&2
	exit 1
}
make -s -C lib install >/dev/null
make -s -C include install >/dev/null
make -s install-pkgconfigDATA >/dev/null
touch "$stamp"
echo "libcurl-minimal: installed in $prefix (configure walrust with --with-curl=$prefix)"
