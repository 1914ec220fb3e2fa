#!/usr/bin/env bash
# Makes sure this machine can build and test bgworker; installs what is missing when run as
# root on Debian, else prints the exact command to run. Called by `make test` and `make demo`.
set -euo pipefail

packages=(postgresql-server-dev-15 libclang-dev libopenblas-dev)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    cmd="apt-get update && apt-get install -y ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: missing Debian packages: ${missing[*]}" >&2
        echo "setup: run as root:  $cmd" >&2
        exit 1
    fi
fi

pg_config="${PG_CONFIG:-pg_config}"
if ! command -v "$pg_config" >/dev/null 2>&1; then
    echo "setup: $pg_config not found; set PG_CONFIG=/path/to/pg_config" >&2
    exit 1
fi
if [ ! -f "$("$pg_config" --includedir-server)/postgres.h" ]; then
    echo "setup: $("$pg_config" --includedir-server) has no server headers" >&2
    exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "setup: tests run the server as the OS user 'postgres', which does not exist;" >&2
    echo "setup: run as root:  useradd --system --home /var/lib/postgresql postgres" >&2
    exit 1
fi
