//! Placement of converted files at their destinations: each file is written under a temporary name next to its
//! destination, fsynced, renamed over the destination, the directory fsynced, and the result verified (size and
//! SHA-256) — so a destination holds either its old content or the complete new file, never a part. Re-placing an
//! identical file is a no-op. `crate::models::paths` owns the allowed-roots rule (shared with ticket validation), `images` the
//! choice of torrent images, `atomic` the per-file protocol. Must never write outside `allowed_roots`, never
//! delete a destination, and never remove anything at start-up but its own temporary names.

pub mod atomic;
pub mod images;

use std::path::{Path, PathBuf};

pub use atomic::{PlaceOutcome, TEMP_PREFIX};

use crate::models::paths::{check_destination, DestinationError};

/// One file to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementItem {
    /// The converted file (in the converter's work dir); copied, never moved.
    pub source: PathBuf,
    /// The ticket's destination (absolute, checked again against `allowed_roots` here).
    pub dest_path: String,
}

/// What a placement did, for `CompletionStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementReport {
    /// Destinations written.
    pub placed_files: Vec<String>,
    /// Destinations that already held an identical file.
    pub skipped_files: Vec<String>,
    /// Total size of every destination of the ticket after placement.
    pub final_size_bytes: u64,
}

/// Why a file could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("destination {dest} refused: {source}")]
    Destination { dest: String, source: DestinationError },
    #[error("converted file {path} is missing (convert the ticket again): {source}")]
    SourceMissing { path: String, source: std::io::Error },
    #[error("{path}: {source} (check that the destination is writable and has space)")]
    Io { path: String, source: std::io::Error },
    #[error("{dest} does not match the converted file after placement: {reason}")]
    VerifyFailed { dest: String, reason: String },
    #[error("placement task failed: {0}")]
    Task(String),
}

impl PlaceError {
    /// Whether placing again later may succeed without a human changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            // A full disk, an unmounted share or a flaky network filesystem can come back.
            PlaceError::Io { .. } | PlaceError::VerifyFailed { .. } | PlaceError::Task(_) => true,
            PlaceError::Destination { .. } | PlaceError::SourceMissing { .. } => false,
        }
    }
}

/// Places every item (in order), calling `progress(files_done, total_files)` after each.
pub async fn place_ticket(
    items: &[PlacementItem],
    allowed_roots: &[PathBuf],
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<PlacementReport, PlaceError> {
    let mut report = PlacementReport::default();
    for (done, item) in items.iter().enumerate() {
        let dest = check_destination(&item.dest_path, allowed_roots)
            .map_err(|source| PlaceError::Destination { dest: item.dest_path.clone(), source })?;
        let Some(root) = allowed_roots.iter().find(|root| dest.starts_with(root)).cloned() else {
            return Err(PlaceError::Destination {
                dest: item.dest_path.clone(),
                source: DestinationError::OutsideRoots { roots: String::new() },
            });
        };
        let source = item.source.clone();
        let (outcome, size) = tokio::task::spawn_blocking(move || atomic::place_file(&source, &dest, &root))
            .await
            .map_err(|err| PlaceError::Task(err.to_string()))??;
        report.final_size_bytes += size;
        match outcome {
            PlaceOutcome::Placed => report.placed_files.push(item.dest_path.clone()),
            PlaceOutcome::Unchanged => report.skipped_files.push(item.dest_path.clone()),
        }
        progress(done + 1, items.len());
    }
    Ok(report)
}

/// Removes the temporary names a killed placement left under `roots` (walks them without following symlinks; an
/// operator's clean-up tool: the pipeline cleans only the destination directories of the ticket it places again,
/// with [`clean_temporary_names`]). Returns how many were removed.
pub fn clean_leftovers(roots: &[PathBuf]) -> Result<usize, PlaceError> {
    let mut removed = 0;
    for root in roots {
        let mut pending: Vec<PathBuf> = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(io_error(&dir, source)),
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else { continue };
                let path = entry.path();
                if kind.is_dir() {
                    pending.push(path);
                } else if kind.is_file() && entry.file_name().to_str().is_some_and(|name| name.starts_with(TEMP_PREFIX))
                {
                    std::fs::remove_file(&path).map_err(|source| io_error(&path, source))?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

/// Removes the temporary names a killed placement left directly in `dirs` (the destination directories of a
/// ticket being placed again; not recursive, symlinks not followed). Returns how many were removed.
pub fn clean_temporary_names(dirs: &[PathBuf]) -> Result<usize, PlaceError> {
    let mut removed = 0;
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(io_error(dir, source)),
        };
        for entry in entries.flatten() {
            let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
            if is_file && entry.file_name().to_str().is_some_and(|name| name.starts_with(TEMP_PREFIX)) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|source| io_error(&path, source))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn io_error(path: &Path, source: std::io::Error) -> PlaceError {
    PlaceError::Io { path: path.display().to_string(), source }
}
