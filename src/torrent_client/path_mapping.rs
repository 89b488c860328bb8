//! Translation between the paths qBittorrent uses and the paths downloader2 reads (`[qbittorrent] path_mappings`,
//! the *arr "remote path mapping" convention): an external qBittorrent in another container or on a NAS often sees
//! the download folder as `/downloads` while this machine mounts it elsewhere.
//!
//! Pure: it never touches the filesystem. Matching is by whole path components (`/downloads` maps
//! `/downloads/x`, never `/downloads2`), and the longest matching prefix wins, in both directions.

use std::path::{Component, Path, PathBuf};

use crate::config::PathMapping;

/// The configured mappings, ready to translate paths both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathMap {
    mappings: Vec<PathMapping>,
}

impl PathMap {
    /// A map of `mappings` (validated by the config: absolute, no `..`).
    pub fn new(mappings: &[PathMapping]) -> Self {
        PathMap { mappings: mappings.to_vec() }
    }

    /// True when no mapping is configured (both sides see the same paths).
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }

    /// The local form of a path qBittorrent reported (unchanged when no `remote` prefix matches).
    pub fn to_local(&self, remote: &Path) -> PathBuf {
        translate(remote, self.mappings.iter().map(|m| (m.remote.as_path(), m.local.as_path())))
    }

    /// The form qBittorrent understands of a local path (unchanged when no `local` prefix matches).
    pub fn to_remote(&self, local: &Path) -> PathBuf {
        translate(local, self.mappings.iter().map(|m| (m.local.as_path(), m.remote.as_path())))
    }

    /// The mapping whose remote side holds `remote` (for error messages), if any.
    pub fn mapping_for_remote(&self, remote: &Path) -> Option<&PathMapping> {
        self.mappings
            .iter()
            .filter(|m| remote.strip_prefix(&m.remote).is_ok())
            .max_by_key(|m| m.remote.components().count())
    }
}

/// Replaces the longest `from` prefix of `path` (whole components) by its `to`.
fn translate<'a>(path: &Path, pairs: impl Iterator<Item = (&'a Path, &'a Path)>) -> PathBuf {
    let best = pairs
        .filter_map(|(from, to)| path.strip_prefix(from).ok().map(|rest| (from.components().count(), to, rest)))
        .max_by_key(|(depth, _, _)| *depth);
    match best {
        Some((_, to, rest)) if rest.as_os_str().is_empty() => to.to_path_buf(),
        Some((_, to, rest)) => to.join(rest),
        None => path.to_path_buf(),
    }
}

/// `root` joined with a torrent's `/`-separated file path, or `None` when the path has anything but plain names
/// (`..`, an absolute prefix, a NUL): torrent file names are untrusted.
pub fn join_torrent_path(root: &Path, torrent_path: &str) -> Option<PathBuf> {
    if torrent_path.contains('\0') {
        return None;
    }
    let mut joined = root.to_path_buf();
    for component in Path::new(torrent_path).components() {
        match component {
            Component::Normal(name) => joined.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> PathMap {
        let mappings: Vec<PathMapping> =
            pairs.iter().map(|(remote, local)| PathMapping { remote: remote.into(), local: local.into() }).collect();
        PathMap::new(&mappings)
    }

    #[test]
    fn reported_paths_become_local_by_the_longest_whole_component_prefix() {
        let paths = map(&[("/downloads", "/mnt/nas/downloads"), ("/downloads/music", "/music"), ("/data/", "/srv")]);
        assert_eq!(paths.to_local(Path::new("/downloads/t1")), PathBuf::from("/mnt/nas/downloads/t1"));
        assert_eq!(paths.to_local(Path::new("/downloads")), PathBuf::from("/mnt/nas/downloads"));
        assert_eq!(paths.to_local(Path::new("/downloads/")), PathBuf::from("/mnt/nas/downloads"));
        assert_eq!(paths.to_local(Path::new("/downloads/music/t2/a b")), PathBuf::from("/music/t2/a b"));
        assert_eq!(paths.to_local(Path::new("/data/x")), PathBuf::from("/srv/x"));
        // Not a component boundary, or no mapping at all: unchanged.
        assert_eq!(paths.to_local(Path::new("/downloads2/t1")), PathBuf::from("/downloads2/t1"));
        assert_eq!(paths.to_local(Path::new("/elsewhere/t1")), PathBuf::from("/elsewhere/t1"));
        assert_eq!(paths.mapping_for_remote(Path::new("/downloads/music/x")).unwrap().local, PathBuf::from("/music"));
        assert!(paths.mapping_for_remote(Path::new("/downloads2")).is_none());
    }

    #[test]
    fn save_paths_sent_become_remote_and_round_trip() {
        let paths = map(&[("/downloads", "/mnt/nas/downloads"), ("/downloads/music", "/mnt/nas/downloads/music")]);
        let local = Path::new("/mnt/nas/downloads/ticket-1");
        assert_eq!(paths.to_remote(local), PathBuf::from("/downloads/ticket-1"));
        assert_eq!(paths.to_local(&paths.to_remote(local)), local);
        assert_eq!(paths.to_remote(Path::new("/mnt/nas/downloads/music/t")), PathBuf::from("/downloads/music/t"));
        assert_eq!(paths.to_remote(Path::new("/mnt/nas/downloadsX")), PathBuf::from("/mnt/nas/downloadsX"));
        assert!(PathMap::default().is_empty());
        assert_eq!(PathMap::default().to_remote(local), local);
    }

    #[test]
    fn torrent_paths_that_could_escape_are_not_joined() {
        let root = Path::new("/dl/t1");
        assert_eq!(join_torrent_path(root, "Album/01 - A.flac"), Some(PathBuf::from("/dl/t1/Album/01 - A.flac")));
        for bad in ["../x", "Album/../../x", "/etc/passwd", "a\0b"] {
            assert_eq!(join_torrent_path(root, bad), None, "{bad:?}");
        }
    }
}
