#!/usr/bin/env bash
# Installs the programs downloader2 runs (Debian/Ubuntu): ffmpeg/ffprobe for conversion, qbittorrent-nox for
# downloads. With --for-tests also what the tests run for real: opentracker + mktorrent for the local BitTorrent
# swarm, docker-compose to validate docker/docker-compose.yml (no Docker engine needed), chromium + chromium-driver
# for the admin page test, fluidsynth + fluid-soundfont-gm to render the realistic music of the audio corpus,
# schemathesis (PyPI, pinned) for the API contract test, openssl for the webhook test (it runs the README's receiver
# snippets), and a Debian 13 root running qbittorrent-nox 5.1 (built once, cached).
set -euo pipefail
packages=(ffmpeg qbittorrent-nox ca-certificates)
if [ "${1:-}" = "--for-tests" ]; then
    packages+=(opentracker mktorrent docker-compose chromium chromium-driver fluidsynth fluid-soundfont-gm python3-pip
        debootstrap openssl)
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
    # qbittorrent-nox 5.1.0 for the tests that run every torrent-client test against 4.5.2 (Debian 12) and 5.1.0:
    # a Debian 13 root built once per machine with debootstrap from the mirror apt already uses, into a temporary
    # folder renamed into place when complete (a half-built root is never used). Tests run it chrooted in its own
    # mount namespace over a copy-on-write layer, so the cached root is never written. See
    # tests/it/support/qbittorrent_root.rs; override the folder with DOWNLOADER2_QBITTORRENT5_ROOT.
    root="${DOWNLOADER2_QBITTORRENT5_ROOT:-/var/cache/downloader2/qbittorrent-5.1-root}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    # Re-used when its package database says 5.1 (read from outside: running the program would write into it).
    has_5_1() { [ -x "$1/usr/bin/qbittorrent-nox" ] \
        && [[ "$(dpkg-query --admindir="$1/var/lib/dpkg" -W -f='${Version}' qbittorrent-nox 2>/dev/null)" == 5.1.* ]]; }
    runs_5_1() { [[ "$($sudo chroot "$1" qbittorrent-nox --version 2>/dev/null)" == *" v5.1."* ]]; }
    if ! has_5_1 "$root"; then
        mirror=""
        if [ -f /etc/apt/sources.list.d/debian.sources ]; then
            mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
        fi
        mirror="${mirror:-http://deb.debian.org/debian}"
        building="$root.building"
        echo "building a Debian 13 root with qbittorrent-nox 5.1 at $root (once per machine, about a minute)"
        $sudo rm -rf "$building"
        $sudo mkdir -p "$(dirname "$root")"
        $sudo debootstrap --variant=minbase --include=qbittorrent-nox trixie "$building" "$mirror"
        { has_5_1 "$building" && runs_5_1 "$building"; } \
            || { echo "the root at $building does not run qbittorrent-nox 5.1" >&2; exit 1; }
        $sudo rm -rf "$root"
        $sudo mv "$building" "$root"
    fi
fi
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs), then run this again" >&2
    exit 1
fi
