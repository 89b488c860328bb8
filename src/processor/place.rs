//! The `placing` stage: re-verifies the converted files in the work dir (a restart may have lost them: then back to
//! `converting`), removes temporary names a killed placement left next to the destinations, places every file
//! atomically, and completes the ticket with its `CompletionStats`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::Utc;
use tokio::sync::mpsc;

use super::{Advance, StageContext, StageError};
use crate::models::{CompletionStats, ConversionRecord, TicketState, TicketWork};
use crate::placer::{self, PlacementItem};
use crate::queue::TicketRecord;

/// `placing` -> `completed` (or -> `converting` when the converted files are gone).
pub async fn place(ctx: &StageContext, record: &TicketRecord, work: TicketWork) -> Result<Advance, StageError> {
    let TicketState::Placing { started_at, .. } = &record.state else {
        return Err(StageError::Inconsistent(format!("ticket is {}, not placing", record.state.kind())));
    };
    let started_at = *started_at;
    let Some(conversion) = work.conversion.clone().filter(outputs_intact) else {
        let total = work.selected.as_ref().map_or(0, |selected| selected.track_mapping.len());
        let next = TicketState::Converting {
            current_track_idx: 0,
            total_tracks: total,
            current_track_name: String::new(),
            started_at: Utc::now(),
        };
        return Ok(Advance::to(next, work).note("reason", "converted files missing (restart?): converting again"));
    };
    let roots = ctx.app.config.placer.allowed_roots.clone();
    let dest_dirs: BTreeSet<PathBuf> =
        conversion.files.iter().filter_map(|file| Path::new(&file.dest_path).parent().map(Path::to_path_buf)).collect();
    let dest_dirs: Vec<PathBuf> = dest_dirs.into_iter().collect();
    let cleaned = tokio::task::spawn_blocking(move || placer::clean_temporary_names(&dest_dirs))
        .await
        .map_err(|err| placer::PlaceError::Task(err.to_string()))??;
    if cleaned > 0 {
        tracing::info!(cleaned, "removed temporary files of an interrupted placement");
    }

    let items: Vec<PlacementItem> = conversion
        .files
        .iter()
        .map(|file| PlacementItem { source: file.path.clone(), dest_path: file.dest_path.clone() })
        .collect();
    let (sender, mut receiver) = mpsc::unbounded_channel::<(usize, usize)>();
    let report = move |done: usize, total: usize| {
        let _ = sender.send((done, total));
    };
    let ticket_id = record.ticket.ticket_id.clone();
    let reporter = async {
        while let Some((done, total)) = receiver.recv().await {
            let state = TicketState::Placing { files_placed: done, total_files: total, started_at };
            let pct = ((done as f64) * 1000.0 / total.max(1) as f64).round() / 10.0;
            ctx.report_progress(&ticket_id, &state, pct).await;
        }
    };
    let placing = async {
        let result = placer::place_ticket(&items, &roots, &report).await;
        drop(report);
        result
    };
    let (result, ()) = tokio::join!(placing, reporter);
    let report = result?;
    let mapped: BTreeSet<&str> = work
        .selected
        .iter()
        .flat_map(|selected| selected.track_mapping.iter().map(|mapped| mapped.catalog_track_id.as_str()))
        .collect();
    let mut missing_track_ids = conversion.missing_track_ids.clone();
    for track in &record.ticket.tracks {
        let id = track.catalog_track_id.as_str();
        if !mapped.contains(id) && !missing_track_ids.iter().any(|missing| missing == id) {
            missing_track_ids.push(id.to_string());
        }
    }
    let stats = CompletionStats {
        download_bytes: work.download_bytes,
        download_duration_secs: work.download_duration_secs,
        conversion_duration_secs: conversion.conversion_duration_secs,
        final_size_bytes: report.final_size_bytes,
        placed_files: report.placed_files,
        skipped_files: report.skipped_files,
        missing_track_ids,
        missing_image_ids: conversion.missing_image_ids.clone(),
        verification: work.current_verification().cloned(),
    };
    tracing::info!(placed = stats.placed_files.len(), skipped = stats.skipped_files.len(), "ticket completed");
    Ok(Advance::to(TicketState::Completed { completed_at: Utc::now(), stats }, work))
}

/// Every converted file is still in the work dir with the size it had when converted.
fn outputs_intact(conversion: &ConversionRecord) -> bool {
    !conversion.files.is_empty()
        && conversion
            .files
            .iter()
            .all(|file| std::fs::metadata(&file.path).is_ok_and(|meta| meta.is_file() && meta.len() == file.size_bytes))
}
