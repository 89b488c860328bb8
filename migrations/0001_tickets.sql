-- Tickets and their history. Times are Unix milliseconds (UTC): integers sort and compare cheaply.
CREATE TABLE tickets (
    id              TEXT PRIMARY KEY NOT NULL,
    -- The ticket exactly as accepted (canonical JSON of the parsed body); never updated.
    ticket_json     TEXT NOT NULL,
    -- Search text for the list filter (artist and album, folded to lower case).
    search_text     TEXT NOT NULL,
    -- The TicketState JSON the API shows, and its name for filtering.
    state_json      TEXT NOT NULL,
    state_kind      TEXT NOT NULL,
    -- Compare-and-set counter: every write of the state increments it.
    version         INTEGER NOT NULL DEFAULT 0,
    priority        INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    lease_owner     TEXT,
    lease_expires_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE INDEX tickets_by_state ON tickets (state_kind, created_at DESC, id DESC);
CREATE INDEX tickets_by_created ON tickets (created_at DESC, id DESC);
CREATE INDEX tickets_ready ON tickets (state_kind, next_attempt_at);

CREATE TABLE ticket_events (
    ticket_id TEXT NOT NULL REFERENCES tickets (id),
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    from_kind TEXT,
    to_kind   TEXT NOT NULL,
    details   TEXT NOT NULL,
    PRIMARY KEY (ticket_id, seq)
) WITHOUT ROWID;

CREATE INDEX ticket_events_by_kind ON ticket_events (to_kind, at);
