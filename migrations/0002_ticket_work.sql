-- The pipeline's working memory per ticket (models::TicketWork as JSON), written in the same transaction as the
-- transition it belongs to, and the torrent the ticket holds (indexed: tickets choosing the same info hash share
-- one torrent, which is removed only when no live ticket holds it).
ALTER TABLE tickets ADD COLUMN work_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tickets ADD COLUMN torrent_hash TEXT;
CREATE INDEX tickets_by_torrent ON tickets (torrent_hash) WHERE torrent_hash IS NOT NULL;
