//! Turning a torrent-relative file name (hostile) into an absolute path under the download's source root: no `..`,
//! no `.`, no absolute or drive prefix, no NUL, no backslash tricks, and after resolving symlinks the file must
//! still be inside the root. Reads metadata only; must never create, open for writing or follow a path outside.

use std::path::{Component, Path, PathBuf};

/// Why a torrent-relative name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourcePathError {
    #[error("empty name")]
    Empty,
    #[error("name contains a NUL byte")]
    NulByte,
    #[error("name is absolute")]
    Absolute,
    #[error("name contains '.' or '..' components")]
    DotComponent,
    #[error("file does not exist")]
    Missing,
    #[error("resolves outside the download directory (to {0})")]
    Escapes(String),
    #[error("not a regular file")]
    NotAFile,
}

/// Checks `relative` lexically and joins it to `root`.
pub fn join_under_root(root: &Path, relative: &str) -> Result<PathBuf, SourcePathError> {
    if relative.is_empty() {
        return Err(SourcePathError::Empty);
    }
    if relative.contains('\0') {
        return Err(SourcePathError::NulByte);
    }
    let path = Path::new(relative);
    let mut joined = root.to_path_buf();
    for component in path.components() {
        match component {
            Component::Normal(part) => joined.push(part),
            Component::RootDir | Component::Prefix(_) => return Err(SourcePathError::Absolute),
            Component::CurDir | Component::ParentDir => return Err(SourcePathError::DotComponent),
        }
    }
    if joined == root {
        return Err(SourcePathError::Empty);
    }
    Ok(joined)
}

/// Resolves `relative` under `root` to an existing regular file whose real path is inside the real `root`.
pub fn resolve_source_file(root: &Path, relative: &str) -> Result<PathBuf, SourcePathError> {
    let joined = join_under_root(root, relative)?;
    let real_root = root.canonicalize().map_err(|_| SourcePathError::Missing)?;
    let real = joined.canonicalize().map_err(|_| SourcePathError::Missing)?;
    if !real.starts_with(&real_root) {
        return Err(SourcePathError::Escapes(real.display().to_string()));
    }
    if !real.is_file() {
        return Err(SourcePathError::NotAFile);
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_traversal_and_symlink_escape() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dl");
        std::fs::create_dir_all(root.join("CD1")).unwrap();
        std::fs::write(root.join("CD1/-i evil.flac"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link.flac")).unwrap();
        assert!(resolve_source_file(&root, "CD1/-i evil.flac").unwrap().ends_with("CD1/-i evil.flac"));
        assert_eq!(resolve_source_file(&root, "../secret"), Err(SourcePathError::DotComponent));
        assert_eq!(resolve_source_file(&root, "/etc/passwd"), Err(SourcePathError::Absolute));
        assert_eq!(resolve_source_file(&root, "a\0b"), Err(SourcePathError::NulByte));
        assert_eq!(resolve_source_file(&root, ""), Err(SourcePathError::Empty));
        assert!(matches!(resolve_source_file(&root, "link.flac"), Err(SourcePathError::Escapes(_))));
        assert_eq!(resolve_source_file(&root, "CD1"), Err(SourcePathError::NotAFile));
        assert_eq!(resolve_source_file(&root, "nope.flac"), Err(SourcePathError::Missing));
    }
}
