//! The qBittorrent versions the client tests run against: Debian 12's qbittorrent-nox 4.5.2 on the host, and
//! qbittorrent-nox 5.1.0 (what most users run today) from a Debian 13 root that `scripts/install-deps.sh
//! --for-tests` builds once per machine.
//!
//! 5.1 runs chrooted into that root, in its own mount namespace over a copy-on-write layer: the cached root is never
//! written, and every mount vanishes with the process (even after a kill -9). Host folders the test needs are bound
//! in, at the same path (profile and downloads look identical on both sides) or at another one (`/downloads`, the
//! external-client case of `[qbittorrent] path_mappings`). The chroot shares the host's network: its WebUI and peer
//! ports are on the same 127.0.0.1.
//!
//! [`on_every_qbittorrent!`] turns one test body `async fn name(version: QbtVersion)` into one `#[tokio::test]` per
//! version (`name::qbittorrent_4_5`, `name::qbittorrent_5_1`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Where `scripts/install-deps.sh --for-tests` builds the Debian 13 root (override: `DOWNLOADER2_QBITTORRENT5_ROOT`).
pub const DEFAULT_ROOT: &str = "/var/cache/downloader2/qbittorrent-5.1-root";

/// A qbittorrent-nox version under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QbtVersion {
    /// Debian 12's 4.5.2 (WebAPI 2.8.19): `pause`/`resume`, `pausedDL`.
    V4_5,
    /// Debian 13's 5.1.0 (WebAPI 2.11.4): `stop`/`start`, `stoppedDL`.
    V5_1,
}

impl QbtVersion {
    /// The WebAPI version qBittorrent must report (`app/webapiVersion`).
    pub fn webapi(self) -> (u32, u32, u32) {
        match self {
            QbtVersion::V4_5 => (2, 8, 19),
            QbtVersion::V5_1 => (2, 11, 4),
        }
    }

    /// The program to start for this version, with a folder of the host bound into the root. `shared` holds host
    /// folders visible at the same path; `mounted_at` host folders visible under another path (host, inside).
    /// For 5.1 a launcher script is written into `launcher_dir`.
    pub fn program(self, launcher_dir: &Path, shared: &[&Path], mounted_at: &[(&Path, &str)]) -> String {
        match self {
            QbtVersion::V4_5 => {
                super::swarm::require_program("qbittorrent-nox", "qbittorrent-nox").display().to_string()
            }
            QbtVersion::V5_1 => write_launcher(launcher_dir, shared, mounted_at).display().to_string(),
        }
    }
}

/// The Debian 13 root, or a failure saying how to build it.
pub fn require_root() -> PathBuf {
    let root =
        std::env::var_os("DOWNLOADER2_QBITTORRENT5_ROOT").map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from);
    assert!(
        root.join("usr/bin/qbittorrent-nox").is_file(),
        "no Debian 13 root with qbittorrent-nox 5.1 at {}: run `scripts/install-deps.sh --for-tests` as root (it \
         builds it once with debootstrap, about a minute), or point DOWNLOADER2_QBITTORRENT5_ROOT at one",
        root.display()
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root_user = status.lines().any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"));
    assert!(root_user, "the qbittorrent-nox 5.1 tests mount and chroot: run them as root (CI and the dev VM do)");
    super::swarm::require_program("unshare", "util-linux");
    root
}

/// Single-quotes a string for sh.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Writes `<dir>/qbittorrent-nox-5.1` (mode 0755): a program that takes qbittorrent-nox's arguments and runs 5.1
/// from the root. It re-executes itself in a new mount namespace, mounts an overlay of the root (upper layer in
/// `<dir>/root-layer`), binds the host folders in, and `exec`s chroot, so the pid the caller spawned is
/// qbittorrent-nox itself (a kill reaches it, and its namespace and mounts die with it).
fn write_launcher(dir: &Path, shared: &[&Path], mounted_at: &[(&Path, &str)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = require_root();
    let layer = dir.join("root-layer");
    let mut binds = String::new();
    for host in shared {
        let inside = host.display().to_string();
        binds.push_str(&format!("bind {} {}\n", sh_quote(&host.display().to_string()), sh_quote(&inside)));
    }
    for (host, inside) in mounted_at {
        binds.push_str(&format!("bind {} {}\n", sh_quote(&host.display().to_string()), sh_quote(inside)));
    }
    let script = format!(
        r#"#!/bin/sh
# qbittorrent-nox 5.1 from {root}, chrooted in its own mount namespace (written by the downloader2 tests).
set -eu
if [ "${{DOWNLOADER2_QBT5_NAMESPACE:-}}" != 1 ]; then
    DOWNLOADER2_QBT5_NAMESPACE=1 exec unshare --mount --propagation private "$0" "$@"
fi
unset DOWNLOADER2_QBT5_NAMESPACE
layer={layer}
merged="$layer/merged"
mkdir -p "$layer/upper" "$layer/work" "$merged"
mount -t overlay overlay -o "lowerdir="{root}",upperdir=$layer/upper,workdir=$layer/work" "$merged"
bind() {{ mkdir -p "$1" "$merged$2" && mount --bind "$1" "$merged$2"; }}
{binds}exec chroot "$merged" qbittorrent-nox "$@"
"#,
        root = sh_quote(&root.display().to_string()),
        layer = sh_quote(&layer.display().to_string()),
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("qbittorrent-nox-5.1");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `on_every_qbittorrent!(name, ...)`: for each `async fn name(version: QbtVersion)` in scope, a module `name` with
/// the tests `qbittorrent_4_5` and `qbittorrent_5_1` running it (filter one version with `cargo test qbittorrent_5_1`).
#[allow(unused_macros)]
macro_rules! on_every_qbittorrent {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::support::qbittorrent_root::QbtVersion;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn qbittorrent_4_5() {
                    super::$name(QbtVersion::V4_5).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn qbittorrent_5_1() {
                    super::$name(QbtVersion::V5_1).await
                }
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use on_every_qbittorrent;
