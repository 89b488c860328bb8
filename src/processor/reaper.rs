//! Removes what no live ticket needs any more: torrents (with their files) whose tickets are all finished, and the
//! work directories of finished tickets. A torrent shared by several tickets stays while any of them is not
//! terminal; one owed to seeding (its ticket completed) stays until qBittorrent reports its share limits reached,
//! or at once when the limits are 0 (the default). Torrents of cancelled or rejected tickets go at once.
//! Torrents tagged for tickets this database does not know are left alone (another installation's).

use std::collections::BTreeSet;

use super::{Clients, StageError};
use crate::app::App;
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
        removed += 1;
    }
    Ok(removed)
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

/// Removes the work directory of a ticket that became terminal (its torrent goes with the next reap).
pub async fn release_work_dir(clients: &Clients, ticket_id: &str) {
    let work_dir = clients.work_dir_for(ticket_id);
    match tokio::fs::remove_dir_all(&work_dir).await {
        Ok(()) => tracing::debug!(ticket_id, path = %work_dir.display(), "work directory removed"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(ticket_id, path = %work_dir.display(), error = %err, "cannot remove work directory"),
    }
}
