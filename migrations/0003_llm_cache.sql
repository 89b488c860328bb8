-- LLM answers by a hash of (provider, model, prompt, schema): a resumed or retried ticket, or a second ticket with
-- the same candidates, does not pay twice. Also the ledger of what the LLM cost (for /api/v1/stats).
CREATE TABLE llm_answers (
    key           TEXT PRIMARY KEY NOT NULL,
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    answer_json   TEXT NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE llm_calls (
    at            INTEGER NOT NULL,
    ticket_id     TEXT,
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    -- answered | cached | failed
    outcome       TEXT NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL
);
