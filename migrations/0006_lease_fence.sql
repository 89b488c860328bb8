-- The transition fence (queue/lease.rs): every claim of a ticket gets a new number, and a worker's writes name the
-- claim they belong to, so a worker whose lease expired and was taken over can no longer change the ticket.
-- Existing rows start at 0; leases found at start-up are dropped anyway (Store::release_all_leases).
ALTER TABLE tickets ADD COLUMN lease_attempt INTEGER NOT NULL DEFAULT 0;
