//! The `converting` stage: first the audio verification of the download (`verify.rs`; a refused release falls back
//! to another candidate or an admin before any encoding), then hands the downloaded files and the chosen mapping to the converter (which probes every
//! source, checks its duration against the ticket before spending CPU, and encodes into the ticket's work dir),
//! reports each track as it starts, and records the outputs for `placing`. A duration that does not fit the ticket
//! sends the ticket back to an admin (`needs_approval` with `duration_mismatch`), the torrent kept; a source that
//! decodes to less than its header promises (damaged) fails the ticket, not retryable, naming the file. What the conversion adjusted (a bitrate
//! capped at a lossy source's) is noted in the history of the transition to `placing`.

use chrono::Utc;
use tokio::sync::mpsc;

use super::{Advance, StageContext, StageError};
use crate::converter::{ConversionJob, ConversionOutput, ConversionProgress, ConvertError};
use crate::models::{
    ApprovalReason, ConversionRecord, ConvertedFileRecord, ScoredCandidate, TicketState, TicketWork, TorrentFile,
};
use crate::queue::TicketRecord;

/// `converting` -> `placing` (or `needs_approval` on a duration mismatch).
pub async fn convert(ctx: &StageContext, record: &TicketRecord, mut work: TicketWork) -> Result<Advance, StageError> {
    let TicketState::Converting { started_at, .. } = &record.state else {
        return Err(StageError::Inconsistent(format!("ticket is {}, not converting", record.state.kind())));
    };
    let started_at = *started_at;
    let (Some(selected), Some(hash)) = (work.selected.clone(), work.torrent_hash.clone()) else {
        return Err(StageError::Inconsistent("converting without a downloaded torrent".into()));
    };
    let torrents = &ctx.app.clients.torrents;
    let progress = torrents.get_progress(&hash).await?;
    let torrent_files: Vec<TorrentFile> =
        torrents.get_files(&hash).await?.iter().map(|file| file.to_torrent_file()).collect();
    if ctx.app.config.verifier.enabled && work.current_verification().is_none() {
        let refused = super::verify::verify_download(
            ctx,
            record,
            &mut work,
            &selected,
            &hash,
            &progress.save_path,
            &torrent_files,
        )
        .await?;
        if let Some(advance) = refused {
            return Ok(advance);
        }
    }
    let job = ConversionJob {
        ticket: record.ticket.clone(),
        source_root: progress.save_path,
        mapping: selected.track_mapping.clone(),
        torrent_files,
        cancel: ctx.cancel.clone(),
        replaygain: work.current_verification().map(super::verify::replaygain_of).unwrap_or_default(),
    };

    let (sender, mut receiver) = mpsc::unbounded_channel::<ConversionProgress>();
    let report = move |progress: ConversionProgress| {
        let _ = sender.send(progress);
    };
    let ticket_id = record.ticket.ticket_id.clone();
    let reporter = async {
        while let Some(progress) = receiver.recv().await {
            let total = progress.total_tracks.max(1);
            let pct = ((progress.track_idx as f64) * 1000.0 / total as f64).round() / 10.0;
            let state = TicketState::Converting {
                current_track_idx: progress.track_idx,
                total_tracks: progress.total_tracks,
                current_track_name: progress.track_name,
                started_at,
            };
            ctx.report_progress(&ticket_id, &state, pct).await;
        }
    };
    let conversion = async {
        let result = ctx.app.clients.converter.convert_ticket(job, &report).await;
        drop(report);
        result
    };
    let (result, ()) = tokio::join!(conversion, reporter);
    match result {
        Ok(output) => {
            let total_files = output.tracks.len() + output.images.len();
            tracing::info!(files = total_files, secs = output.conversion_duration_secs, "conversion done");
            work.conversion = Some(conversion_record(&output));
            let next = TicketState::Placing { files_placed: 0, total_files, started_at: Utc::now() };
            let advance = Advance::to(next, work);
            if output.adjustments.is_empty() {
                return Ok(advance);
            }
            for adjustment in &output.adjustments {
                tracing::info!("{adjustment}");
            }
            Ok(advance.note("adjustments", output.adjustments.clone()))
        }
        Err(ConvertError::DurationMismatch { catalog_track_id, expected_secs, found_secs }) => {
            let message = ConvertError::DurationMismatch { catalog_track_id, expected_secs, found_secs }.to_string();
            tracing::warn!("{message}");
            Ok(duration_mismatch(work, selected, expected_secs, found_secs).note("error", message))
        }
        Err(ConvertError::Cancelled) => Err(StageError::Stopped),
        Err(err) => Err(err.into()),
    }
}

fn conversion_record(output: &ConversionOutput) -> ConversionRecord {
    ConversionRecord {
        work_dir: output.work_dir.clone(),
        files: output
            .tracks
            .iter()
            .chain(&output.images)
            .map(|file| ConvertedFileRecord {
                path: file.path.clone(),
                dest_path: file.dest_path.clone(),
                size_bytes: file.size_bytes,
            })
            .collect(),
        missing_track_ids: output.missing_track_ids.clone(),
        missing_image_ids: output.missing_image_ids.clone(),
        conversion_duration_secs: output.conversion_duration_secs,
    }
}

/// Back to an admin with the candidates of the last match (the downloaded one recommended again, so approving
/// it explicitly is a conscious choice) and the torrent kept.
fn duration_mismatch(work: TicketWork, selected: ScoredCandidate, expected_secs: f64, found_secs: f64) -> Advance {
    let mut candidates = work.ranked.clone();
    let position = candidates.iter().position(|scored| scored.candidate == selected.candidate);
    let recommended_idx = match position {
        Some(idx) => Some(idx),
        None => {
            candidates.insert(0, selected.clone());
            Some(0)
        }
    };
    Advance::to(
        TicketState::NeedsApproval {
            candidates,
            recommended_idx,
            confidence: selected.score,
            reason: ApprovalReason::DurationMismatch { expected_secs, found_secs },
            waiting_since: Utc::now(),
        },
        work,
    )
}
