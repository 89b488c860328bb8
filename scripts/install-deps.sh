#!/usr/bin/env bash
# Installs the programs downloader2 and its tests run for real (Debian/Ubuntu): ffmpeg/ffprobe for conversion,
# qbittorrent-nox for downloads, opentracker + mktorrent for the tests' local BitTorrent swarm, docker-compose to
# validate docker/docker-compose.yml (no Docker engine needed).
set -euo pipefail
packages=(ffmpeg qbittorrent-nox opentracker mktorrent ca-certificates docker-compose)
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
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs), then run this again" >&2
    exit 1
fi
