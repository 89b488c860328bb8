#!/usr/bin/env bash
# Installs the programs downloader2 runs (Debian/Ubuntu): ffmpeg/ffprobe for conversion, qbittorrent-nox for
# downloads. With --for-tests also what the tests run for real: opentracker + mktorrent for the local BitTorrent
# swarm, docker-compose to validate docker/docker-compose.yml (no Docker engine needed), chromium + chromium-driver
# for the admin page test, fluidsynth + fluid-soundfont-gm to render the realistic music of the audio corpus.
set -euo pipefail
packages=(ffmpeg qbittorrent-nox ca-certificates)
if [ "${1:-}" = "--for-tests" ]; then
    packages+=(opentracker mktorrent docker-compose chromium chromium-driver fluidsynth fluid-soundfont-gm)
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
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs), then run this again" >&2
    exit 1
fi
