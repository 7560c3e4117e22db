-- Every message, its entry and its outbox rows are written by one statement of the
-- committer, so the foreign keys never caught anything; they cost each append a lookup
-- and a row lock (FOR KEY SHARE) per message and per delivery, about a quarter of
-- PostgreSQL's time on the append path. What they promised is checked where it matters:
-- `liaison ledger verify` reports a message without its accepted entry and an accepted
-- entry without its message, by seq, and the relay only ever claims outbox rows joined
-- to their message.
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_seq_fkey;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_message_id_fkey;
