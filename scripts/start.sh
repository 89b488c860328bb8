#!/usr/bin/env bash
# Quick start on a fresh Debian machine: installs what downloader2 needs, builds it, and starts the service with
# config.toml if present (else the defaults). Tokens are generated on first start into ./data/tokens.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked
config_args=()
[ -f config.toml ] && config_args=(--config config.toml)
exec ./target/release/downloader2 serve "${config_args[@]}"
