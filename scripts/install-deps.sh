#!/usr/bin/env bash
# Installs the programs downloader2 runs (Debian/Ubuntu): ffmpeg/ffprobe for conversion, qbittorrent-nox for
# downloads. With --for-tests also what the tests run for real: opentracker + mktorrent for the local BitTorrent
# swarm, docker-compose to validate docker/docker-compose.yml (no Docker engine needed), chromium + chromium-driver
# for the admin page test, and schemathesis (PyPI, pinned) for the API contract test.
set -euo pipefail
packages=(ffmpeg qbittorrent-nox ca-certificates)
if [ "${1:-}" = "--for-tests" ]; then
    packages+=(opentracker mktorrent docker-compose chromium chromium-driver python3-pip)
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [ "${1:-}" = "--for-tests" ]; then
    schemathesis_version=4.32.5
    if ! schemathesis --version 2>/dev/null | grep -q "$schemathesis_version"; then
        # A pyenv/venv python takes it as is; Debian's own python3 needs --break-system-packages.
        python3 -m pip install --quiet "schemathesis==$schemathesis_version" \
            || python3 -m pip install --quiet --break-system-packages "schemathesis==$schemathesis_version"
        if command -v pyenv >/dev/null; then pyenv rehash; fi
    fi
fi
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs), then run this again" >&2
    exit 1
fi
