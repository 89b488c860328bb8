//! The download stages: `auto_approved`/`approved` -> `downloading` (add the chosen torrent, wait for its file list,
//! download only the files the ticket needs) and `downloading` -> `converting` (follow the torrent, report progress
//! at most once a second, re-attach to it when it vanished, and fall back to the next acceptable candidate when it
//! stalls). Tickets choosing the same info hash share one torrent: adding it again only tags it for this ticket.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::{unless_cancelled, Advance, StageContext, StageError};
use crate::matcher::{next_fallback, wanted_files, FallbackStep};
use crate::models::torrent::listed_kind;
use crate::models::{
    ApprovalReason, ImageType, InfoHash, ScoredCandidate, Ticket, TicketState, TicketWork, TorrentFile,
};
use crate::queue::TicketRecord;
use crate::searcher::TorrentSource;
use crate::torrent_client::{AddSource, ClientFile, TorrentClientError};

/// How often a download is polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long the torrent client may stay unreachable (restarting, say) before the stage gives up for now.
pub const CLIENT_OUTAGE_TOLERANCE: Duration = Duration::from_secs(90);

/// `auto_approved` | `approved` -> `downloading`.
pub async fn start_download(
    ctx: &StageContext,
    record: &TicketRecord,
    mut work: TicketWork,
) -> Result<Advance, StageError> {
    let selected = match &record.state {
        TicketState::AutoApproved { selected, .. } | TicketState::Approved { selected, .. } => selected.clone(),
        other => return Err(StageError::Inconsistent(format!("cannot start a download from {}", other.kind()))),
    };
    let hash = attach(ctx, &record.ticket, &selected).await?;
    let now = Utc::now();
    tracing::info!(%hash, title = %selected.candidate.title, "download started");
    work.selected = Some(selected);
    work.torrent_hash = Some(hash.clone());
    work.download_started_at = Some(now);
    work.conversion = None;
    let next = TicketState::Downloading {
        torrent_hash: hash.to_string(),
        progress_pct: 0.0,
        download_speed_bps: 0,
        eta_secs: None,
        started_at: now,
    };
    Ok(Advance::to(next, work))
}

/// How many times a torrent that vanished while being attached is added again.
const RE_ADDS: u32 = 3;

/// Adds the candidate's torrent (or tags the existing one), waits for its file list, and starts downloading the
/// files the ticket needs. A torrent removed meanwhile (another ticket's clean-up won the race) is added again.
async fn attach(ctx: &StageContext, ticket: &Ticket, selected: &ScoredCandidate) -> Result<InfoHash, StageError> {
    let torrents = &ctx.clients.torrents;
    let source = unless_cancelled(&ctx.cancel, ctx.clients.searcher.torrent_source(&selected.candidate)).await??;
    let add = match source {
        TorrentSource::Magnet(magnet) => AddSource::Magnet(magnet),
        TorrentSource::TorrentFile(bytes) => AddSource::TorrentFile(bytes),
    };
    let stall_limit = Duration::from_secs(ctx.app.config.qbittorrent.stall_timeout_secs.max(1));
    let mut re_adds = 0;
    loop {
        let hash = {
            let _membership = ctx.clients.torrent_membership.lock().await;
            unless_cancelled(&ctx.cancel, torrents.add_torrent(add.clone(), &ticket.ticket_id)).await??
        };
        match choose_files(ctx, ticket, selected, &hash, stall_limit).await {
            Err(StageError::Torrent(TorrentClientError::TorrentNotFound { .. })) if re_adds < RE_ADDS => {
                re_adds += 1;
                tracing::info!(%hash, "torrent removed while it was being attached: adding it again");
            }
            Err(err) => return Err(err),
            Ok(()) => return Ok(hash),
        }
    }
}

/// Waits for the torrent's file list, then downloads exactly the files the ticket needs.
async fn choose_files(
    ctx: &StageContext,
    ticket: &Ticket,
    selected: &ScoredCandidate,
    hash: &InfoHash,
    stall_limit: Duration,
) -> Result<(), StageError> {
    let torrents = &ctx.clients.torrents;
    let waited = Instant::now();
    let files = loop {
        match torrents.get_files(hash).await {
            Ok(files) if !files.is_empty() => break files,
            Ok(_) | Err(TorrentClientError::MetadataNotReady { .. }) => {}
            Err(err) => return Err(err.into()),
        }
        if waited.elapsed() > stall_limit {
            return Err(TorrentClientError::MetadataTimeout { hash: hash.clone(), secs: stall_limit.as_secs() }.into());
        }
        unless_cancelled(&ctx.cancel, tokio::time::sleep(POLL_INTERVAL)).await?;
    };
    let wanted = wanted_paths(ticket, selected, &files);
    if wanted.is_empty() {
        return Err(StageError::Inconsistent(format!(
            "none of the mapped files of {:?} is in torrent {hash}",
            selected.candidate.title
        )));
    }
    unless_cancelled(&ctx.cancel, torrents.set_file_priorities(hash, &wanted)).await??;
    Ok(())
}

/// The torrent files the ticket needs, as the matcher decides them ([`wanted_files`]) from the torrent's real
/// file list: the mapped files (a CUE image with its sheets) and the picture for each of the ticket's images.
pub fn wanted_paths(ticket: &Ticket, selected: &ScoredCandidate, files: &[ClientFile]) -> Vec<String> {
    // Only the kinds of file the pipeline reads (audio, CUE sheets, images, logs): no copy of the junk of a
    // 20,000-file list.
    let torrent_files: Vec<TorrentFile> =
        files.iter().filter(|file| listed_kind(&file.path).is_some()).map(ClientFile::to_torrent_file).collect();
    let images: Vec<ImageType> = ticket.images.iter().map(|image| image.image_type.clone()).collect();
    wanted_files(selected, &torrent_files, &images)
}

/// `downloading` -> `converting` when the wanted files are complete; -> `auto_approved` / `needs_approval` (the
/// next candidate) when the torrent stalled.
pub async fn follow_download(
    ctx: &StageContext,
    record: &TicketRecord,
    mut work: TicketWork,
) -> Result<Advance, StageError> {
    let TicketState::Downloading { torrent_hash, started_at, .. } = &record.state else {
        return Err(StageError::Inconsistent(format!("ticket is {}, not downloading", record.state.kind())));
    };
    let Some(selected) = work.selected.clone() else {
        return Err(StageError::Inconsistent("downloading without a chosen candidate".into()));
    };
    let ticket_id = record.ticket.ticket_id.as_str();
    let started_at = *started_at;
    let torrents = ctx.clients.torrents.clone();
    let mut hash: InfoHash = match torrent_hash.parse() {
        Ok(hash) => hash,
        // A retry from `failed` before the torrent was added: add it now.
        Err(_) => attach(ctx, &record.ticket, &selected).await?,
    };
    let mut last_reported: Option<(Instant, f64)> = None;
    let mut outage_since: Option<Instant> = None;
    loop {
        match torrents.get_progress(&hash).await {
            Ok(progress) if progress.is_complete => {
                let now = Utc::now();
                work.torrent_hash = Some(hash.clone());
                work.download_bytes = progress.size;
                let began = work.download_started_at.unwrap_or(started_at);
                work.download_duration_secs = (now - began).num_milliseconds().max(0) as f64 / 1000.0;
                let mapped = selected.track_mapping.len();
                let first = first_mapped_track_name(&record.ticket, &selected);
                tracing::info!(%hash, bytes = progress.size, "download complete");
                let next = TicketState::Converting {
                    current_track_idx: 0,
                    total_tracks: mapped,
                    current_track_name: first,
                    started_at: now,
                };
                return Ok(Advance::to(next, work));
            }
            Ok(progress) => {
                outage_since = None;
                if matches!(progress.state, crate::torrent_client::TorrentState::StoppedIncomplete) {
                    // Parked (re-added after the client lost it, or never started): choose the files and start.
                    let files = torrents.get_files(&hash).await?;
                    let wanted = wanted_paths(&record.ticket, &selected, &files);
                    torrents.set_file_priorities(&hash, &wanted).await?;
                }
                let pct = (progress.progress * 1000.0).round() / 10.0;
                let due = last_reported.is_none_or(|(at, last_pct)| {
                    at.elapsed() >= Duration::from_secs(1) && (pct - last_pct).abs() >= 0.1
                });
                if due {
                    let state = TicketState::Downloading {
                        torrent_hash: hash.to_string(),
                        progress_pct: pct,
                        download_speed_bps: progress.download_speed,
                        eta_secs: progress.eta.map(|eta| eta.as_secs()),
                        started_at,
                    };
                    ctx.report_progress(ticket_id, &state, pct).await;
                    last_reported = Some((Instant::now(), pct));
                }
            }
            Err(TorrentClientError::Stalled { secs, .. }) => {
                let reason = format!("torrent {hash} stalled: no progress and no seeds for {secs} s");
                tracing::warn!(%hash, "{reason}");
                return Ok(fall_back(ctx, work, hash, reason));
            }
            Err(TorrentClientError::TorrentNotFound { .. }) => {
                tracing::warn!(%hash, "torrent vanished from the client: adding it again");
                hash = attach(ctx, &record.ticket, &selected).await?;
                work.torrent_hash = Some(hash.clone());
            }
            // Complete in qBittorrent but not visible here (path_mappings): not an outage to wait out.
            Err(err @ TorrentClientError::DownloadNotVisible { .. }) => return Err(err.into()),
            Err(err) if err.is_retryable() => {
                let since = *outage_since.get_or_insert_with(Instant::now);
                if since.elapsed() > CLIENT_OUTAGE_TOLERANCE {
                    return Err(err.into());
                }
                tracing::debug!(error = %err, "torrent client unavailable; waiting");
            }
            Err(err) => return Err(err.into()),
        }
        unless_cancelled(&ctx.cancel, tokio::time::sleep(POLL_INTERVAL)).await?;
    }
}

fn first_mapped_track_name(ticket: &Ticket, selected: &ScoredCandidate) -> String {
    ticket
        .tracks
        .iter()
        .find(|track| selected.track_mapping.iter().any(|mapped| mapped.catalog_track_id == track.catalog_track_id))
        .map(|track| track.name.clone())
        .unwrap_or_default()
}

/// After a dead torrent: the matcher's [`next_fallback`] decides. The next candidate that would have been
/// auto-approved on its own merit (no hard reject, no doubt: a 1-seeder swarm or a doubtful duration is not) is
/// approved automatically; otherwise the remaining candidates go to an admin. The dead hash is remembered for this
/// ticket, and released (the reaper removes the torrent once no live ticket holds it).
fn fall_back(ctx: &StageContext, mut work: TicketWork, dead: InfoHash, reason: String) -> Advance {
    let now = Utc::now();
    let threshold = ctx.app.config.matcher.auto_approve_threshold;
    let dead_title = work.selected.as_ref().map(|selected| selected.candidate.title.clone());
    if !work.failed_hashes.contains(&dead) {
        work.failed_hashes.push(dead.clone());
    }
    work.torrent_hash = None;
    work.selected = None;
    work.download_started_at = None;
    let failed_titles: Vec<&str> = dead_title.as_deref().into_iter().collect();
    let fallback = next_fallback(&work.ranked, &work.failed_hashes, &failed_titles, threshold);
    work.ranked = fallback.remaining.clone();
    let next = match fallback.step {
        FallbackStep::AutoApprove { selected } => match fallback.remaining.get(selected) {
            Some(next) => {
                let confidence = next.score;
                TicketState::AutoApproved { selected: next.clone(), confidence, approved_at: now }
            }
            None => needs_approval(fallback.remaining, None, 0.0, ApprovalReason::NoExactMatch {}, now),
        },
        FallbackStep::NeedsApproval { recommended_idx, confidence, reason } => {
            needs_approval(fallback.remaining, recommended_idx, confidence, reason, now)
        }
    };
    Advance::to(next, work).note("fallback_from", dead.to_string()).note("error", reason)
}

fn needs_approval(
    candidates: Vec<ScoredCandidate>,
    recommended_idx: Option<usize>,
    confidence: f64,
    reason: ApprovalReason,
    waiting_since: chrono::DateTime<Utc>,
) -> TicketState {
    TicketState::NeedsApproval { candidates, recommended_idx, confidence, reason, waiting_since }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{TorrentCandidate, TrackMapping};

    fn ticket() -> Ticket {
        serde_json::from_value(serde_json::json!({
            "ticket_id": "t1",
            "created_at": "2026-11-25T10:00:00Z",
            "search": {"artist": "A", "album": "B"},
            "tracks": [
                {"catalog_track_id": "a", "track_number": 1, "name": "One", "duration_secs": 10.0,
                 "dest_path": "/media/a.ogg"},
                {"catalog_track_id": "b", "track_number": 2, "name": "Two", "duration_secs": 10.0,
                 "dest_path": "/media/b.ogg"},
                {"catalog_track_id": "c", "track_number": 3, "name": "Three", "duration_secs": 10.0,
                 "dest_path": "/media/c.ogg"}
            ],
            "images": [{"catalog_image_id": "i", "type": "cover_front", "dest_path": "/media/cover.jpg"}],
            "constraints": {"format": "ogg_vorbis"},
            "metadata_to_embed": {"artist": "A", "album": "B"}
        }))
        .unwrap()
    }

    fn file(index: u64, path: &str) -> ClientFile {
        ClientFile { index, path: path.into(), size: 1000 + index, progress: 0.0, priority: 0 }
    }

    fn mapped(id: &str, path: &str) -> TrackMapping {
        TrackMapping { catalog_track_id: id.into(), torrent_file_path: path.into(), confidence: 0.9 }
    }

    fn selected(mapping: Vec<TrackMapping>) -> ScoredCandidate {
        ScoredCandidate {
            candidate: TorrentCandidate::with_title("A - B"),
            score: 0.9,
            reasoning: String::new(),
            track_mapping: mapping,
            hard_rejects: Vec::new(),
            doubts: Vec::new(),
        }
    }

    #[test]
    fn wants_mapped_audio_cue_images_with_their_sheets_and_the_cover_only() {
        let files = [
            file(0, "A - B/01 One.flac"),
            file(1, "A - B/CD2/B.flac"),
            file(2, "A - B/CD2/B.cue"),
            file(3, "A - B/cover.jpg"),
            file(4, "A - B/back.jpg"),
            file(5, "A - B/info.nfo"),
            file(6, "A - B/02 Two (demo).flac"),
        ];
        let chosen = selected(vec![
            mapped("a", "A - B/01 One.flac"),
            mapped("b", "A - B/CD2/B.flac#2"),
            mapped("c", "gone.flac"),
        ]);
        let wanted = wanted_paths(&ticket(), &chosen, &files);
        assert_eq!(wanted, ["A - B/01 One.flac", "A - B/CD2/B.cue", "A - B/CD2/B.flac", "A - B/cover.jpg"]);
    }

    #[test]
    fn a_mapping_outside_the_torrent_wants_nothing() {
        let files = [file(0, "X/01.flac")];
        assert!(wanted_paths(&ticket(), &selected(vec![mapped("a", "../../etc/passwd")]), &files).is_empty());
    }
}
