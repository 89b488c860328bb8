//! Where files may be written: the `[placer] allowed_roots` check shared by ticket validation (at `POST`) and by
//! the placer (again, right before writing, in case a symlink appeared since), and the limits every filesystem the
//! service writes to has (a name of at most 255 bytes, a path of at most 4,095), so a destination no filesystem can
//! hold is refused when the ticket is posted instead of failing in placing after the download and the conversion.
//! Pure path logic plus `canonicalize` of the part of a destination that already exists; never creates anything.

use std::path::{Component, Path, PathBuf};

/// Longest file or directory name, in bytes (`NAME_MAX` of ext4, XFS, btrfs, ZFS, NTFS via ntfs-3g).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest destination path, in bytes (`PATH_MAX` is 4,096 including the terminating NUL).
pub const MAX_PATH_BYTES: usize = 4095;

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("path must not be empty")]
    Empty,
    #[error("path must not contain NUL bytes")]
    NulByte,
    #[error("path must not contain control characters (found {found})")]
    ControlCharacter { found: String },
    #[error("path is {bytes} bytes long; at most {MAX_PATH_BYTES} bytes fit in a filesystem path")]
    PathTooLong { bytes: usize },
    #[error("path component {component:?} is {bytes} bytes long; a file or directory name holds at most {MAX_COMPONENT_BYTES} bytes")]
    ComponentTooLong { component: String, bytes: usize },
    #[error("path must be absolute")]
    NotAbsolute,
    #[error("path must not contain '..' or '.' components")]
    DotComponent,
    #[error("path must name a file, not a directory")]
    NoFileName,
    #[error("path is outside every allowed root ({roots})")]
    OutsideRoots { roots: String },
    #[error("path leaves the allowed roots through a symbolic link (resolves to {resolved})")]
    SymlinkEscape { resolved: String },
}

/// Checks that `dest` is an absolute, clean path inside one of `allowed_roots`, also after resolving the symlinks
/// of the part that exists on disk. Returns the lexically normalised path (for duplicate detection).
pub fn check_destination(dest: &str, allowed_roots: &[PathBuf]) -> Result<PathBuf, DestinationError> {
    if dest.is_empty() {
        return Err(DestinationError::Empty);
    }
    if dest.contains('\0') {
        return Err(DestinationError::NulByte);
    }
    if let Some(control) = dest.chars().find(|c| c.is_control()) {
        return Err(DestinationError::ControlCharacter { found: control.escape_unicode().to_string() });
    }
    if dest.len() > MAX_PATH_BYTES {
        return Err(DestinationError::PathTooLong { bytes: dest.len() });
    }
    if let Some(long) = dest.split('/').find(|component| component.len() > MAX_COMPONENT_BYTES) {
        let shown: String = long.chars().take(40).collect();
        return Err(DestinationError::ComponentTooLong { component: format!("{shown}..."), bytes: long.len() });
    }
    let path = Path::new(dest);
    if !path.is_absolute() {
        return Err(DestinationError::NotAbsolute);
    }
    let mut normalised = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => normalised.push(component.as_os_str()),
            Component::Normal(part) => normalised.push(part),
            Component::CurDir | Component::ParentDir => return Err(DestinationError::DotComponent),
        }
    }
    if dest.ends_with('/') || normalised.file_name().is_none() {
        return Err(DestinationError::NoFileName);
    }
    let Some(root) = allowed_roots.iter().find(|root| normalised.starts_with(root) && normalised != **root) else {
        return Err(DestinationError::OutsideRoots { roots: describe_roots(allowed_roots) });
    };
    check_resolved_inside(&normalised, root)?;
    Ok(normalised)
}

/// Resolves the deepest existing ancestor of `path` (or `path` itself) and checks it is still inside the resolved
/// `root`. A root that does not exist yet cannot hold a symlink, so it passes.
pub fn check_resolved_inside(path: &Path, root: &Path) -> Result<(), DestinationError> {
    let Ok(resolved_root) = root.canonicalize() else {
        return Ok(());
    };
    let mut existing = Some(path);
    while let Some(candidate) = existing {
        if candidate.symlink_metadata().is_ok() {
            let resolved = match candidate.canonicalize() {
                Ok(resolved) => resolved,
                // A dangling symlink: where it would point is unknown, so refuse it.
                Err(_) => return Err(DestinationError::SymlinkEscape { resolved: candidate.display().to_string() }),
            };
            if resolved.starts_with(&resolved_root) {
                return Ok(());
            }
            return Err(DestinationError::SymlinkEscape { resolved: resolved.display().to_string() });
        }
        existing = candidate.parent();
    }
    Ok(())
}

/// The file `path` (absolute, lexically normalised) names once the symlinks of its existing part are resolved: two
/// destinations with the same identity are the same file, however they are spelled (`/media/a/x.ogg` and
/// `/media/b/x.ogg` when `a` is a symlink to `b`). The part that does not exist yet is appended as written.
pub fn destination_identity(path: &Path) -> PathBuf {
    let mut missing: Vec<&std::ffi::OsStr> = Vec::new();
    let mut existing = Some(path);
    while let Some(candidate) = existing {
        if let Ok(resolved) = candidate.canonicalize() {
            let mut identity = resolved;
            identity.extend(missing.iter().rev());
            return identity;
        }
        match candidate.file_name() {
            Some(name) => missing.push(name),
            None => break,
        }
        existing = candidate.parent();
    }
    path.to_path_buf()
}

fn describe_roots(roots: &[PathBuf]) -> String {
    if roots.is_empty() {
        return "none configured".to_string();
    }
    roots.iter().map(|root| root.display().to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<PathBuf> {
        vec![PathBuf::from("/media")]
    }

    #[test]
    fn accepts_plain_path_inside_root() {
        assert_eq!(check_destination("/media/a/b.ogg", &roots()).unwrap(), PathBuf::from("/media/a/b.ogg"));
    }

    #[test]
    fn rejects_traversal_relative_nul_and_outside() {
        assert_eq!(check_destination("/media/../etc/passwd", &roots()), Err(DestinationError::DotComponent));
        assert_eq!(check_destination("media/a.ogg", &roots()), Err(DestinationError::NotAbsolute));
        assert_eq!(check_destination("/media/a\0.ogg", &roots()), Err(DestinationError::NulByte));
        assert!(matches!(check_destination("/mediax/a.ogg", &roots()), Err(DestinationError::OutsideRoots { .. })));
        assert!(matches!(check_destination("/media", &roots()), Err(DestinationError::OutsideRoots { .. })));
    }

    #[test]
    fn rejects_names_and_paths_no_filesystem_holds() {
        let long_name = format!("/media/{}.ogg", "n".repeat(252));
        assert!(matches!(
            check_destination(&long_name, &roots()),
            Err(DestinationError::ComponentTooLong { bytes: 256, .. })
        ));
        let fits = format!("/media/{}.ogg", "n".repeat(251));
        assert!(check_destination(&fits, &roots()).is_ok());
        // Multi-byte characters count in bytes: 128 x 2 bytes = 256.
        let wide = format!("/media/{}/x.ogg", "é".repeat(128));
        assert!(matches!(check_destination(&wide, &roots()), Err(DestinationError::ComponentTooLong { .. })));
        let deep = format!("/media{}/x.ogg", "/dddddddddd".repeat(372));
        assert!(deep.len() > MAX_PATH_BYTES);
        assert_eq!(check_destination(&deep, &roots()), Err(DestinationError::PathTooLong { bytes: deep.len() }));
        for hostile in
            ["/media/a\nb.ogg", "/media/a\rb.ogg", "/media/a\tb.ogg", "/media/a\u{1b}[31m.ogg", "/media/a\u{85}.ogg"]
        {
            assert!(
                matches!(check_destination(hostile, &roots()), Err(DestinationError::ControlCharacter { .. })),
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn identity_resolves_in_root_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::os::unix::fs::symlink(root.join("b"), root.join("a")).unwrap();
        let through_link = destination_identity(&root.join("a/new/x.ogg"));
        assert_eq!(through_link, root.join("b/new/x.ogg"));
        assert_eq!(destination_identity(&root.join("b/new/x.ogg")), through_link);
        assert_ne!(destination_identity(&root.join("c/x.ogg")), through_link);
    }

    #[test]
    fn rejects_symlink_leaving_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let dest = root.join("link/x.ogg");
        let err = check_destination(dest.to_str().unwrap(), std::slice::from_ref(&root)).unwrap_err();
        assert!(matches!(err, DestinationError::SymlinkEscape { .. }), "{err:?}");
        let ok = root.join("sub/x.ogg");
        assert!(check_destination(ok.to_str().unwrap(), &[root]).is_ok());
    }
}
