//! Starting and stopping the service (being written for the foundation issue).

/// Start-up failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServeError(pub String);

/// Prepares the service (placeholder).
pub async fn prepare() -> Result<(), ServeError> {
    Ok(())
}

/// Runs the service (placeholder).
pub async fn run() -> Result<(), ServeError> {
    Ok(())
}
