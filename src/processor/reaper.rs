//! Removes what no live ticket needs any more: torrents (with their files) whose tickets are all finished, and the
//! work directories of finished tickets. A torrent shared by several tickets stays while any of them is not
//! terminal; one owed to seeding (its ticket completed) stays until qBittorrent reports its share limits reached,
//! or at once when the limits are 0 (the default). Torrents of cancelled or rejected tickets go at once.
//! Torrents tagged for tickets this database does not know are left alone (another installation's).
//! With its torrent goes the torrent's own folder, `<downloads>/<ticket id>/`, once qBittorrent has deleted the
//! files in it: only directories that hold no file any more are removed, never a file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::StageError;
use crate::app::{App, Clients};
use crate::models::StateKind;
use crate::torrent_client::TorrentStatus;

/// One pass over the client's torrents. Returns how many torrents were removed.
pub async fn reap_torrents(app: &App, clients: &Clients) -> Result<usize, StageError> {
    let mut removed = 0;
    for status in clients.torrents.poll_all().await? {
        if !may_remove(app, &status).await? {
            continue;
        }
        // Decide again under the membership lock with a fresh view: a ticket may have joined the torrent since.
        let _membership = clients.torrent_membership.lock().await;
        let fresh = clients.torrents.poll_all().await?.into_iter().find(|current| current.hash == status.hash);
        let Some(fresh) = fresh else { continue };
        if !may_remove(app, &fresh).await? {
            continue;
        }
        clients.torrents.remove_torrent(&fresh.hash, true).await?;
        tracing::info!(
            hash = %fresh.hash, name = %fresh.name, ticket_ids = ?fresh.ticket_ids,
            "torrent removed: no live ticket needs it"
        );
        remove_download_folder(&fresh).await;
        removed += 1;
    }
    Ok(removed)
}

/// How long the reaper waits for qBittorrent to delete a removed torrent's files before leaving its folder.
const FOLDER_DELETE_WAIT: Duration = Duration::from_secs(20);

/// Removes the folder a removed torrent was saved in when it is the ticket's own (`<downloads>/<ticket id>/`, the
/// save path `add_torrent` chose) and qBittorrent has deleted every file in it (it deletes after answering, so
/// this waits up to `FOLDER_DELETE_WAIT`). A folder still holding a file is left alone and logged.
async fn remove_download_folder(status: &TorrentStatus) {
    let folder = status.progress.save_path.clone();
    let ticket_folder = folder
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| status.ticket_ids.iter().any(|id| id == name));
    if !ticket_folder {
        return;
    }
    let deadline = Instant::now() + FOLDER_DELETE_WAIT;
    loop {
        let path = folder.clone();
        match tokio::task::spawn_blocking(move || remove_empty_tree(&path)).await {
            Ok(Ok(true)) => {
                tracing::debug!(path = %folder.display(), ticket_ids = ?status.ticket_ids, "download folder removed");
                return;
            }
            Ok(Ok(false)) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(Ok(false)) => {
                tracing::warn!(
                    path = %folder.display(), ticket_ids = ?status.ticket_ids,
                    "download folder still holds files: left alone"
                );
                return;
            }
            Ok(Err(err)) => {
                tracing::warn!(
                    path = %folder.display(), ticket_ids = ?status.ticket_ids, error = %err,
                    "cannot remove download folder"
                );
                return;
            }
            Err(err) => {
                tracing::warn!(
                    path = %folder.display(), ticket_ids = ?status.ticket_ids, error = %err,
                    "download folder removal failed"
                );
                return;
            }
        }
    }
}

/// Removes `dir` and the directories below it when none of them holds anything but directories. Returns whether
/// it is gone (`true` also when it never existed), `false` when a file, symlink or other entry is still there.
/// Never removes anything but empty directories and never follows a symlink.
fn remove_empty_tree(dir: &Path) -> std::io::Result<bool> {
    let mut directories: Vec<PathBuf> = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                return Ok(false);
            }
            pending.push(entry.path());
        }
        directories.push(current);
    }
    // Deepest first: a directory is empty once its subdirectories are gone.
    for directory in directories.iter().rev() {
        match std::fs::remove_dir(directory) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

/// Whether no live ticket needs the torrent any more (and its seeding, if owed, is done).
async fn may_remove(app: &App, status: &TorrentStatus) -> Result<bool, StageError> {
    if status.ticket_ids.is_empty() {
        return Ok(false); // a metadata fetch in flight
    }
    let holders = app.store.torrent_holders(&status.hash).await?;
    if holders.iter().any(|(_, kind)| !kind.is_terminal()) {
        return Ok(false);
    }
    let mut states = BTreeSet::new();
    for id in &status.ticket_ids {
        match app.store.state_of(id).await? {
            Some(kind) => {
                states.insert(kind);
            }
            None => return Ok(false), // another installation's ticket
        }
    }
    if states.iter().any(|kind| !kind.is_terminal()) {
        return Ok(false);
    }
    let seeding = &app.config.qbittorrent;
    let no_seeding = seeding.seed_ratio_limit.abs() < f64::EPSILON || seeding.seed_time_limit_mins == 0;
    let owes_seeding =
        states.contains(&StateKind::Completed) || holders.iter().any(|(_, kind)| *kind == StateKind::Completed);
    Ok(!owes_seeding || no_seeding || status.share_limit_reached)
}

/// Removes the work directory and the verification evidence of a ticket that became terminal (its torrent goes with
/// the next reap).
pub async fn release_work_dir(clients: &Clients, ticket_id: &str) {
    let work_dir = clients.work_dir_for(ticket_id);
    match tokio::fs::remove_dir_all(&work_dir).await {
        Ok(()) => tracing::debug!(ticket_id, path = %work_dir.display(), "work directory removed"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(ticket_id, path = %work_dir.display(), error = %err, "cannot remove work directory"),
    }
    remove_evidence(clients, ticket_id).await;
}

/// Removes a ticket's verification evidence (the audio verifier's spectrograms), and their parent once no ticket
/// has any.
async fn remove_evidence(clients: &Clients, ticket_id: &str) {
    let evidence_dir = clients.evidence_dir_for(ticket_id);
    match tokio::fs::remove_dir_all(&evidence_dir).await {
        Ok(()) => {
            if let Some(parent) = evidence_dir.parent() {
                let _ = tokio::fs::remove_dir(parent).await;
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(ticket_id, path = %evidence_dir.display(), error = %err, "cannot remove evidence"),
    }
}

/// Start-up: removes the evidence folders a previous process left for tickets that are finished (it was killed
/// between the terminal transition and [`release_work_dir`]) or that this database does not know. Evidence of a
/// live ticket stays: an admin may be looking at it. What cannot be listed or looked up is logged and kept.
/// Returns how many folders were removed.
pub async fn clean_evidence_leftovers(app: &App) -> usize {
    let evidence_root = app.clients.work_root.join(crate::app::EVIDENCE_DIR);
    let mut entries = match tokio::fs::read_dir(&evidence_root).await {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(err) => {
            tracing::warn!(path = %evidence_root.display(), error = %err, "cannot list the evidence folders");
            return 0;
        }
    };
    let mut removed = 0;
    loop {
        let entry = match entries.next_entry().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(err) => {
                tracing::warn!(path = %evidence_root.display(), error = %err, "cannot list the evidence folders");
                break;
            }
        };
        let Some(ticket_id) = entry.file_name().to_str().map(str::to_string) else { continue };
        match app.store.state_of(&ticket_id).await {
            Ok(Some(state)) if !state.is_terminal() => {}
            Ok(_) => {
                remove_evidence(&app.clients, &ticket_id).await;
                removed += 1;
            }
            Err(err) => tracing::warn!(ticket_id, error = %err, "cannot look the ticket up; keeping its evidence"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_trees_of_empty_directories_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("ticket-1");
        std::fs::create_dir_all(folder.join("Album/Scans")).unwrap();
        std::fs::write(folder.join("Album/01.flac"), b"x").unwrap();
        assert!(!remove_empty_tree(&folder).unwrap(), "a file is still there");
        assert!(folder.join("Album/01.flac").is_file(), "never removes a file");
        std::fs::remove_file(folder.join("Album/01.flac")).unwrap();
        std::os::unix::fs::symlink(dir.path(), folder.join("Album/link")).unwrap();
        assert!(!remove_empty_tree(&folder).unwrap(), "a symlink counts as content");
        std::fs::remove_file(folder.join("Album/link")).unwrap();
        assert!(remove_empty_tree(&folder).unwrap());
        assert!(!folder.exists());
        assert!(dir.path().is_dir(), "the parent stays");
        assert!(remove_empty_tree(&folder).unwrap(), "already gone");
    }
}
