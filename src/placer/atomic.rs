//! The per-file placement protocol: temporary name in the destination's directory, write, fsync, rename, fsync the
//! directory, verify size and SHA-256 against the source. Blocking I/O (run it on a blocking thread). Must never
//! write to the destination name directly, never leave a partial file under it, and never write through a directory
//! that resolves outside the allowed root.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{io_error, PlaceError};
use crate::models::paths::check_resolved_inside;

/// Prefix of temporary names; start-up cleanup removes files with it.
pub const TEMP_PREFIX: &str = ".d2-partial-";

/// What placing one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceOutcome {
    Placed,
    /// An identical file was already at the destination.
    Unchanged,
}

/// Size and SHA-256 of a file.
pub fn fingerprint(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += u64::try_from(read).unwrap_or(u64::MAX);
    }
    Ok((size, hasher.finalize().into()))
}

/// Places `source` at `dest` (already checked against `root` lexically). Returns the outcome and the size.
pub fn place_file(source: &Path, dest: &Path, root: &Path) -> Result<(PlaceOutcome, u64), PlaceError> {
    let shown = dest.display().to_string();
    let refused = |source| PlaceError::Destination { dest: shown.clone(), source };
    let (size, digest) = fingerprint(source)
        .map_err(|err| PlaceError::SourceMissing { path: source.display().to_string(), source: err })?;
    check_resolved_inside(dest, root).map_err(refused)?;
    if dest.symlink_metadata().is_ok_and(|meta| meta.is_file()) {
        if let Ok((existing_size, existing_digest)) = fingerprint(dest) {
            if existing_size == size && existing_digest == digest {
                return Ok((PlaceOutcome::Unchanged, size));
            }
        }
    }
    let parent = dest.parent().ok_or_else(|| refused(crate::models::paths::DestinationError::NoFileName))?;
    std::fs::create_dir_all(parent).map_err(|err| io_error(parent, err))?;
    // A directory of the path may have become a symlink since the ticket was validated.
    check_resolved_inside(parent, root).map_err(refused)?;

    let temp = parent.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
    if let Err(err) = write_synced_copy(source, &temp) {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    if let Err(err) = std::fs::rename(&temp, dest) {
        let _ = std::fs::remove_file(&temp);
        return Err(io_error(dest, err));
    }
    File::open(parent).and_then(|dir| dir.sync_all()).map_err(|err| io_error(parent, err))?;

    let (placed_size, placed_digest) = fingerprint(dest).map_err(|err| io_error(dest, err))?;
    if placed_size != size || placed_digest != digest {
        return Err(PlaceError::VerifyFailed {
            dest: shown,
            reason: format!("{placed_size} bytes placed, {size} expected, or checksum differs"),
        });
    }
    Ok((PlaceOutcome::Placed, size))
}

fn write_synced_copy(source: &Path, temp: &PathBuf) -> Result<(), PlaceError> {
    let mut input = File::open(source)
        .map_err(|err| PlaceError::SourceMissing { path: source.display().to_string(), source: err })?;
    let mut output = OpenOptions::new().write(true).create_new(true).open(temp).map_err(|err| io_error(temp, err))?;
    std::io::copy(&mut input, &mut output).map_err(|err| io_error(temp, err))?;
    output.flush().map_err(|err| io_error(temp, err))?;
    output.sync_all().map_err(|err| io_error(temp, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_then_skips_identical_then_replaces_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        let source = dir.path().join("src.bin");
        std::fs::write(&source, b"first").unwrap();
        let dest = root.join("Artist/Album/01.ogg");
        assert_eq!(place_file(&source, &dest, &root).unwrap(), (PlaceOutcome::Placed, 5));
        assert_eq!(std::fs::read(&dest).unwrap(), b"first");
        assert_eq!(place_file(&source, &dest, &root).unwrap().0, PlaceOutcome::Unchanged);
        std::fs::write(&source, b"second!").unwrap();
        assert_eq!(place_file(&source, &dest, &root).unwrap(), (PlaceOutcome::Placed, 7));
        assert_eq!(std::fs::read(&dest).unwrap(), b"second!");
        let leftovers: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the destination remains");
    }

    #[test]
    fn refuses_directory_symlinked_outside_after_validation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("Artist")).unwrap();
        let source = dir.path().join("src.bin");
        std::fs::write(&source, b"x").unwrap();
        let err = place_file(&source, &root.join("Artist/01.ogg"), &root).unwrap_err();
        assert!(matches!(err, PlaceError::Destination { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(!err.is_retryable());
    }
}
