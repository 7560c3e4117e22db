-- Case traces read ledger_entries (indexed by caseref); nothing looks messages up by case,
-- so that index only slowed every append. Exports and verification read messages in seq
-- ranges, which needs an index on seq.
DROP INDEX IF EXISTS messages_caseref;
CREATE INDEX IF NOT EXISTS messages_seq ON messages (seq);
