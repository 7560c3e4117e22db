-- The administrators' console (liaison-ledger `console.rs`): each of its queries reaches
-- its rows through one of these, so that a page stays fast however large the ledger grows.

-- Search by case reference, newest first.
CREATE INDEX IF NOT EXISTS messages_caseref_seq ON messages (caseref, seq) WHERE caseref IS NOT NULL;
-- Messages per day and type (an index-only scan of the period).
CREATE INDEX IF NOT EXISTS messages_received_at_type ON messages (received_at, type);
-- Rejections: this week's by code, and the newest listed.
CREATE INDEX IF NOT EXISTS ledger_entries_rejected_at ON ledger_entries (recorded_at)
    WHERE kind = 'message.rejected';
CREATE INDEX IF NOT EXISTS ledger_entries_rejected_seq ON ledger_entries (seq)
    WHERE kind = 'message.rejected';
-- Dead deliveries waiting for a redrive.
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (delivery_id) WHERE state = 'dead';
-- Cases with a matter still open.
CREATE INDEX IF NOT EXISTS case_threads_open ON case_threads (caseref) WHERE NOT closed;
