#!/usr/bin/env bash
# `make pgbouncer`: a PgBouncer that supports prepared statements in transaction mode (1.21 or
# later, max_prepared_statements), for the tests and the bench that run Janus behind one.
#
# One on the PATH that is recent enough is used as it is. Otherwise Debian's own source of
# PgBouncer 1.24.1 (trixie's package, whose original tarball is checked against its SHA-256
# below) is built into .venv/pgbouncer, which `make clean` removes: bookworm's package is 1.18,
# which has no prepared statement support, and bookworm-backports has none. The build needs
# libevent-dev and pkg-config from apt; it takes about ten seconds on two cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERSION=1.24.1
TARBALL=pgbouncer_${VERSION}.orig.tar.gz
URL=http://deb.debian.org/debian/pool/main/p/pgbouncer/$TARBALL
SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
PREFIX=$PWD/.venv/pgbouncer

# The same check devtools/pgbouncer.py makes when it looks for the binary.
if .venv/bin/python -m devtools.pgbouncer binary >/dev/null 2>&1; then
    exit 0
fi

echo "PgBouncer >= 1.21 is missing (prepared statements in transaction mode):" \
    "building Debian's $VERSION into $PREFIX"
if ! dpkg -s libevent-dev pkg-config >/dev/null 2>&1; then
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq libevent-dev libssl-dev pkg-config make gcc >/dev/null
fi

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
curl -sSfL --retry 3 -o "$build/$TARBALL" "$URL"
echo "$SHA256  $build/$TARBALL" | sha256sum --check --quiet
tar -xzf "$build/$TARBALL" -C "$build"
cd "$build/pgbouncer-$VERSION"
./configure --prefix="$PREFIX" --without-cares >"$build/configure.log" 2>&1 ||
    { tail -n 30 "$build/configure.log"; exit 1; }
make -j"$(nproc)" >"$build/make.log" 2>&1 || { tail -n 30 "$build/make.log"; exit 1; }
make install >"$build/install.log" 2>&1 || { tail -n 30 "$build/install.log"; exit 1; }
"$PREFIX/bin/pgbouncer" --version | head -n 1
