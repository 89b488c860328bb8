//! The `searching` stage: queries the indexers (the ticket's own queries, or an admin's custom query from
//! force-search) and keeps the results in the ticket's working memory for `matching`.

use chrono::Utc;

use super::{unless_cancelled, Advance, StageContext, StageError};
use crate::models::{TicketState, TicketWork};
use crate::queue::TicketRecord;

/// `searching` -> `matching`, or `NoResults` (retried later) when the indexers found nothing.
pub async fn search(ctx: &StageContext, record: &TicketRecord, mut work: TicketWork) -> Result<Advance, StageError> {
    let custom_query = match &record.state {
        TicketState::Searching { query, .. } => query.clone().filter(|query| !query.trim().is_empty()),
        _ => None,
    };
    let ticket = &record.ticket;
    let results =
        unless_cancelled(&ctx.cancel, ctx.app.clients.searcher.search(ticket, custom_query.as_deref())).await??;
    if results.is_empty() {
        let query = custom_query.unwrap_or_else(|| format!("{} {}", ticket.search.artist, ticket.search.album));
        return Err(StageError::NoResults { query });
    }
    tracing::info!(results = results.len(), "search found candidates");
    let found = results.len();
    work.search_results = results;
    work.ranked.clear();
    Ok(Advance::to(TicketState::Matching { candidates_found: found, started_at: Utc::now() }, work))
}
