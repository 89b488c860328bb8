//! The admin's routes of the audio verification: the blocklist of releases the verifier refused
//! (`GET /api/v1/blocklist`), removing one so it may be chosen again (`DELETE /api/v1/blocklist/{info_hash}`), and
//! the spectrogram pictures of suspect files (`GET /api/v1/ticket/{id}/verification/{release}/{file}/spectrogram.png`).
//! Entries and pictures are written by the pipeline's verification step (`processor::verify`), never here.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::auth::AdminAuth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::AppState;
use crate::models::InfoHash;
use crate::queue::BlocklistEntry;

/// Answer of `GET /blocklist`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlocklistView {
    /// Newest first.
    pub entries: Vec<BlocklistEntry>,
}

/// The releases never chosen again for any ticket (a lossy transcode sold as lossless, a corrupt download).
#[utoipa::path(get, path = "/api/v1/blocklist", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = BlocklistView)))]
pub async fn list(State(app): State<AppState>, _auth: AdminAuth) -> Result<Json<BlocklistView>, ApiError> {
    let entries = app.blocklist().await?;
    Ok(Json(BlocklistView { entries }))
}

/// Removes a release from the blocklist: later matches may choose it again.
#[utoipa::path(delete, path = "/api/v1/blocklist/{info_hash}", tag = "admin", security(("bearer" = [])),
    params(("info_hash" = String, Path, description = "40 hex digits")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn remove(
    State(app): State<AppState>,
    auth: AdminAuth,
    ApiPath(info_hash): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let hash: InfoHash = info_hash
        .parse()
        .map_err(|_| ApiError::unprocessable("info_hash", "must be a v1 info hash (40 hex digits)"))?;
    let removed = app.blocklist_remove(&hash).await?;
    if !removed {
        return Err(ApiError::not_found(format!("{hash} is not blocklisted")));
    }
    tracing::info!(%hash, by = %auth.actor, "removed from the blocklist");
    Ok(StatusCode::NO_CONTENT)
}

/// The spectrogram (ffmpeg `showspectrumpic`, PNG) of file `file` of release `release` in the ticket's
/// `verifications`, drawn for suspect files only.
#[utoipa::path(get, path = "/api/v1/ticket/{id}/verification/{release}/{file}/spectrogram.png", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "ticket_id"),
        ("release" = u32, Path, description = "index into the ticket's `verifications`"),
        ("file" = u32, Path, description = "index into that release's `tracks`")),
    responses((status = 200, description = "PNG picture", content_type = "image/png", body = Vec<u8>),
        (status = 404, body = ErrorBody)))]
pub async fn spectrogram(
    State(app): State<AppState>,
    _auth: AdminAuth,
    ApiPath((id, release, file)): ApiPath<(String, usize, usize)>,
) -> Result<Response, ApiError> {
    let work = app.ticket_work(&id).await?;
    let verification = work
        .verifications
        .get(release)
        .ok_or_else(|| ApiError::not_found(format!("ticket {id:?} has no verified release {release}")))?;
    let drawn = verification.tracks.get(file).is_some_and(|track| track.spectrogram);
    if !drawn {
        return Err(ApiError::not_found(format!("no spectrogram for file {file} of release {release}")));
    }
    let path = crate::app::spectrogram_path(&app.clients.evidence_dir_for(&id), &verification.info_hash, file);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found("the spectrogram is gone (the ticket ended or the work dir was cleaned)"))?;
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=3600")], bytes).into_response())
}
