//! The blocklist of releases (table `blocklist`): every SQL statement about it. The verification step
//! (`processor::verify`) adds the info hash of a release it refused (a transcode, a corrupt download); matching
//! drops blocklisted candidates before scoring; the admin lists and clears entries over the API and the admin page.
//! Nothing here decides what is refused.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::storage::WriteTx;
use super::store::{from_millis, to_millis, Store, StoreError};
use crate::models::InfoHash;

/// Longest `details` text kept per entry.
const MAX_DETAILS_LEN: usize = 500;

/// One blocklisted release.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BlocklistEntry {
    /// Lower-case hex v1 info hash.
    pub info_hash: String,
    pub title: String,
    /// `transcode_suspected` or `corrupt_download`.
    pub reason: String,
    /// The first refused file and its verdict, for people.
    pub details: String,
    /// The ticket whose download found it.
    pub ticket_id: String,
    pub added_at: DateTime<Utc>,
}

impl Store {
    /// Adds (or refreshes) a blocklist entry.
    pub async fn blocklist_add(&self, entry: &BlocklistEntry) -> Result<(), StoreError> {
        let details: String = entry.details.chars().take(MAX_DETAILS_LEN).collect();
        let _writer = self.writer.lock().await;
        let mut tx = WriteTx::begin(&self.pool, &self.storage).await?;
        let result = sqlx::query(
            "INSERT INTO blocklist (info_hash, title, reason, details, ticket_id, added_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (info_hash) DO UPDATE SET title = ?2, reason = ?3, details = ?4, ticket_id = ?5, added_at = ?6",
        )
        .bind(entry.info_hash.to_ascii_lowercase())
        .bind(&entry.title)
        .bind(&entry.reason)
        .bind(details)
        .bind(&entry.ticket_id)
        .bind(to_millis(entry.added_at))
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(StoreError::from);
        tx.finish(result, &self.storage).await
    }

    /// Removes an entry; whether there was one.
    pub async fn blocklist_remove(&self, info_hash: &InfoHash) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = WriteTx::begin(&self.pool, &self.storage).await?;
        let result = sqlx::query("DELETE FROM blocklist WHERE info_hash = ?1")
            .bind(info_hash.to_string())
            .execute(&mut *tx)
            .await
            .map(|done| done.rows_affected() > 0)
            .map_err(StoreError::from);
        tx.finish(result, &self.storage).await
    }

    /// Every entry, newest first.
    pub async fn blocklist(&self) -> Result<Vec<BlocklistEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT info_hash, title, reason, details, ticket_id, added_at FROM blocklist ORDER BY added_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BlocklistEntry {
                    info_hash: row.try_get("info_hash")?,
                    title: row.try_get("title")?,
                    reason: row.try_get("reason")?,
                    details: row.try_get("details")?,
                    ticket_id: row.try_get("ticket_id")?,
                    added_at: from_millis(row.try_get("added_at")?),
                })
            })
            .collect()
    }

    /// The blocklisted info hashes (entries whose stored hash no longer parses are skipped).
    pub async fn blocklisted_hashes(&self) -> Result<Vec<InfoHash>, StoreError> {
        let rows = sqlx::query("SELECT info_hash FROM blocklist").fetch_all(&self.pool).await?;
        Ok(rows.iter().filter_map(|row| row.try_get::<String, _>("info_hash").ok()?.parse().ok()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_are_added_once_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("test.db")).await.unwrap();
        let hash: InfoHash = "ab".repeat(20).parse().unwrap();
        let entry = BlocklistEntry {
            info_hash: "AB".repeat(20),
            title: "A - B [FLAC]".into(),
            reason: "transcode_suspected".into(),
            details: "x".repeat(2000),
            ticket_id: "t1".into(),
            added_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        store.blocklist_add(&entry).await.unwrap();
        store.blocklist_add(&BlocklistEntry { ticket_id: "t2".into(), ..entry.clone() }).await.unwrap();
        let listed = store.blocklist().await.unwrap();
        assert_eq!(listed.len(), 1, "one entry per hash");
        assert_eq!(listed[0].info_hash, "ab".repeat(20), "stored lower-case");
        assert_eq!((listed[0].ticket_id.as_str(), listed[0].details.len()), ("t2", MAX_DETAILS_LEN));
        assert_eq!(store.blocklisted_hashes().await.unwrap(), vec![hash.clone()]);
        assert!(store.blocklist_remove(&hash).await.unwrap());
        assert!(!store.blocklist_remove(&hash).await.unwrap());
        assert!(store.blocklisted_hashes().await.unwrap().is_empty());
    }
}
