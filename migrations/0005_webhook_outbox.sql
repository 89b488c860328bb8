-- The catalog webhook's outbox: one row per event to POST, inserted in the same transaction as the transition it
-- reports (an event exists if and only if its transition committed), deleted once the receiver answered 2xx.
-- Delivered in `seq` order (AUTOINCREMENT: a deleted row's number is never reused, so order is commit order).
CREATE TABLE webhook_outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Unique per event, the same on every delivery (the receiver drops duplicates by it).
    event_id        TEXT NOT NULL UNIQUE,
    ticket_id       TEXT NOT NULL,
    -- The state entered (completed, failed, needs_approval, cancelled, rejected).
    event           TEXT NOT NULL,
    -- The ticket_events entry of the transition.
    history_seq     INTEGER NOT NULL,
    -- models::WebhookEvent as JSON (what every delivery sends, plus its timestamp and attempt number).
    event_json      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    -- Failed deliveries so far, when the next may be tried, and how the last one failed.
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_error      TEXT
);
