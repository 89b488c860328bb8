-- One row the health check rewrites while database writes are failing (disk full, read-only), to notice within
-- seconds that they work again even when nothing else is being written.
CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);
