-- Releases the audio verifier refused (a lossy transcode sold as lossless, a corrupt download): never chosen again
-- for any ticket until an admin removes the entry (DELETE /api/v1/blocklist/{info_hash} or the admin page).
CREATE TABLE blocklist (
    -- Lower-case hex v1 info hash.
    info_hash  TEXT PRIMARY KEY NOT NULL,
    -- The release's title as the indexer named it.
    title      TEXT NOT NULL,
    -- Why: transcode_suspected or corrupt_download.
    reason     TEXT NOT NULL,
    -- One line for people: the first refused file and its verdict.
    details    TEXT NOT NULL,
    -- The ticket whose download found it.
    ticket_id  TEXT NOT NULL,
    added_at   INTEGER NOT NULL
);
