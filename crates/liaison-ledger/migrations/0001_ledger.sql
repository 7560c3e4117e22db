-- The audit ledger: one row per entry, gapless seq from 1. `entry` holds the canonical
-- bytes the Merkle tree hashes; the other columns are copies for indexing only.
CREATE TABLE ledger_entries (
    seq         BIGINT PRIMARY KEY CHECK (seq >= 1),
    recorded_at TIMESTAMPTZ NOT NULL,
    kind        TEXT NOT NULL,
    message_id  UUID,
    caseref     TEXT,
    agency      TEXT,
    entry       BYTEA NOT NULL,
    leaf_hash   BYTEA NOT NULL CHECK (octet_length(leaf_hash) = 32)
);
CREATE INDEX ledger_entries_message_id ON ledger_entries (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX ledger_entries_caseref ON ledger_entries (caseref) WHERE caseref IS NOT NULL;

-- Every accepted message with the exact bytes the sender submitted.
CREATE TABLE messages (
    id          UUID PRIMARY KEY,
    seq         BIGINT NOT NULL REFERENCES ledger_entries (seq),
    sender      TEXT NOT NULL,
    type        TEXT NOT NULL,
    caseref     TEXT,
    inreplyto   UUID,
    traceparent TEXT,
    channel     TEXT NOT NULL,
    sha256      BYTEA NOT NULL CHECK (octet_length(sha256) = 32),
    body        BYTEA NOT NULL,
    route       JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX messages_caseref ON messages (caseref) WHERE caseref IS NOT NULL;
CREATE INDEX messages_inreplyto ON messages (inreplyto) WHERE inreplyto IS NOT NULL;

-- Mutable working state of the relay; the ledger entries are the record of what happened.
CREATE TABLE outbox (
    delivery_id     BIGSERIAL PRIMARY KEY,
    message_id      UUID NOT NULL REFERENCES messages (id),
    recipient       TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('to', 'cc')),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'dispatched', 'acknowledged')),
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    leased_until    TIMESTAMPTZ,
    dispatched_at   TIMESTAMPTZ,
    acknowledged_at TIMESTAMPTZ,
    last_error      TEXT
);
CREATE INDEX outbox_message_id ON outbox (message_id);
-- The relay only ever looks for due pending rows; the rest of the table may grow large.
CREATE INDEX outbox_pending_due ON outbox (next_attempt_at, delivery_id) WHERE state = 'pending';

-- Append-only, enforced by the database itself. Row triggers do not fire on TRUNCATE,
-- hence the separate statement triggers.
CREATE FUNCTION liaison_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'liaison ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION liaison_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION liaison_refuse_change();
CREATE TRIGGER messages_append_only
    BEFORE UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION liaison_refuse_change();
CREATE TRIGGER messages_no_truncate
    BEFORE TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION liaison_refuse_change();
