-- Archival (`liaison ledger archive`, liaison-ledger `archive.rs`) moves a closed range of
-- the ledger out of the hot tables by dropping whole partitions: `ledger_entries` and
-- `messages` are partitioned by seq range, `partition_entries` seqs per partition
-- (partition k holds seqs k·N+1 ..= (k+1)·N, tables `ledger_entries_<k>`, `messages_<k>`).
-- Rows written before partitioning, or beyond the partitions created ahead, land in the
-- default partitions, which are never archived.
--
-- What the rest of the ledger needs of an archived range stays here: the tree nodes (in
-- `ledger_tree_nodes`, never archived), the leaf hashes (`ledger_archived_leaves`), and
-- what duplicate detection needs of each archived message (`archived_messages`), so that a
-- resubmitted old message is answered as the duplicate it is, not accepted again.

CREATE TABLE ledger_partitioning (
    only_row          BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    partition_entries BIGINT NOT NULL CHECK (partition_entries >= 1)
);

-- ledger_entries: the existing table becomes the default partition.
ALTER TABLE ledger_entries RENAME TO ledger_entries_default;
ALTER INDEX IF EXISTS ledger_entries_pkey RENAME TO ledger_entries_default_pkey;
ALTER INDEX IF EXISTS ledger_entries_message_id RENAME TO ledger_entries_default_message_id;
ALTER INDEX IF EXISTS ledger_entries_caseref RENAME TO ledger_entries_default_caseref;
ALTER INDEX IF EXISTS ledger_entries_rejected_at RENAME TO ledger_entries_default_rejected_at;
ALTER INDEX IF EXISTS ledger_entries_rejected_seq RENAME TO ledger_entries_default_rejected_seq;
DROP TRIGGER ledger_entries_append_only ON ledger_entries_default;
DROP TRIGGER ledger_entries_no_truncate ON ledger_entries_default;
CREATE TABLE ledger_entries (
    LIKE ledger_entries_default INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (seq)
) PARTITION BY RANGE (seq);
CREATE INDEX ledger_entries_message_id ON ledger_entries (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX ledger_entries_caseref ON ledger_entries (caseref) WHERE caseref IS NOT NULL;
CREATE INDEX ledger_entries_rejected_at ON ledger_entries (recorded_at)
    WHERE kind = 'message.rejected';
CREATE INDEX ledger_entries_rejected_seq ON ledger_entries (seq)
    WHERE kind = 'message.rejected';
ALTER TABLE ledger_entries ATTACH PARTITION ledger_entries_default DEFAULT;

-- messages: seq is unique too (one acceptance entry per message) and is the partition key;
-- the id stays indexed in every partition. The committer, alone under the sequencing lock,
-- answers a known id as a duplicate before it would insert it again.
ALTER TABLE messages RENAME TO messages_default;
ALTER INDEX IF EXISTS messages_pkey RENAME TO messages_default_pkey;
ALTER INDEX IF EXISTS messages_caseref RENAME TO messages_default_caseref;
ALTER INDEX IF EXISTS messages_inreplyto RENAME TO messages_default_inreplyto;
ALTER INDEX IF EXISTS messages_caseref_seq RENAME TO messages_default_caseref_seq;
ALTER INDEX IF EXISTS messages_received_at_type RENAME TO messages_default_received_at_type;
DROP INDEX IF EXISTS messages_seq;
-- The primary key moves from id to seq (the partition key must be part of it).
ALTER TABLE messages_default DROP CONSTRAINT IF EXISTS messages_default_pkey;
DROP TRIGGER messages_append_only ON messages_default;
DROP TRIGGER messages_no_truncate ON messages_default;
CREATE TABLE messages (
    LIKE messages_default INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (seq)
) PARTITION BY RANGE (seq);
CREATE INDEX messages_id ON messages (id);
CREATE INDEX messages_inreplyto ON messages (inreplyto) WHERE inreplyto IS NOT NULL;
CREATE INDEX messages_caseref_seq ON messages (caseref, seq) WHERE caseref IS NOT NULL;
CREATE INDEX messages_received_at_type ON messages (received_at, type);
ALTER TABLE messages ATTACH PARTITION messages_default DEFAULT;

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

-- One row per archive: the range it took out, the root of the tree through its last seq,
-- the signed checkpoint of exactly that size, and where the operator said it went.
CREATE TABLE ledger_archives (
    last_seq    BIGINT PRIMARY KEY CHECK (last_seq >= 1),
    first_seq   BIGINT NOT NULL CHECK (first_seq >= 1 AND first_seq <= last_seq),
    root_hash   BYTEA NOT NULL CHECK (octet_length(root_hash) = 32),
    messages    BIGINT NOT NULL,
    manifest_sha256 BYTEA NOT NULL CHECK (octet_length(manifest_sha256) = 32),
    location    TEXT NOT NULL,
    archived_at TIMESTAMPTZ NOT NULL
);

-- Level 0 of the tree for archived seqs (the live ones are ledger_entries.leaf_hash).
CREATE TABLE ledger_archived_leaves (
    seq       BIGINT PRIMARY KEY CHECK (seq >= 1),
    leaf_hash BYTEA NOT NULL CHECK (octet_length(leaf_hash) = 32)
);

-- What the committer needs to answer a resubmitted archived message.
CREATE TABLE archived_messages (
    id          UUID PRIMARY KEY,
    seq         BIGINT NOT NULL,
    sender      TEXT NOT NULL,
    caseref     TEXT,
    sha256      BYTEA NOT NULL CHECK (octet_length(sha256) = 32),
    route       JSONB NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);

CREATE TRIGGER ledger_archives_append_only
    BEFORE UPDATE OR DELETE ON ledger_archives
    FOR EACH ROW EXECUTE FUNCTION liaison_refuse_change();
CREATE TRIGGER ledger_archived_leaves_append_only
    BEFORE UPDATE OR DELETE ON ledger_archived_leaves
    FOR EACH ROW EXECUTE FUNCTION liaison_refuse_change();
CREATE TRIGGER archived_messages_append_only
    BEFORE UPDATE OR DELETE ON archived_messages
    FOR EACH ROW EXECUTE FUNCTION liaison_refuse_change();

-- Creates the partitions that cover every seq up to `through` (fixing the partition size
-- at `wanted_entries` on the first call) and answers the last seq they cover. Runs with
-- the owner's rights: the broker's role may not create tables, yet it is the broker that
-- sees the ledger grow. Never recreates an archived partition.
CREATE FUNCTION liaison_extend_partitions(through BIGINT, wanted_entries BIGINT)
RETURNS BIGINT LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
    n BIGINT;
    k BIGINT;
    floor_seq BIGINT;
    created INTEGER := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7419230561);
    INSERT INTO ledger_partitioning (partition_entries) VALUES (wanted_entries)
        ON CONFLICT DO NOTHING;
    SELECT partition_entries INTO n FROM ledger_partitioning;
    SELECT greatest(
        (SELECT coalesce(max(seq), 0) FROM ledger_entries_default),
        (SELECT coalesce(max(seq), 0) FROM messages_default),
        (SELECT coalesce(max(last_seq), 0) FROM ledger_archives)
    ) INTO floor_seq;
    k := (floor_seq + n - 1) / n;
    -- At most 16 partitions a call (each takes locks until the transaction ends): the
    -- committer calls again after its next batch when it needs more.
    WHILE k * n < through AND created < 16 LOOP
        IF to_regclass(format('ledger_entries_%s', k)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF ledger_entries FOR VALUES FROM (%s) TO (%s)',
                'ledger_entries_' || k, k * n + 1, (k + 1) * n + 1);
            created := created + 1;
        END IF;
        IF to_regclass(format('messages_%s', k)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF messages FOR VALUES FROM (%s) TO (%s)',
                'messages_' || k, k * n + 1, (k + 1) * n + 1);
        END IF;
        k := k + 1;
    END LOOP;
    RETURN greatest(k * n, floor_seq);
END;
$$;

-- Drops the partitions wholly inside seqs `first` ..= `last` (an archive's range, recorded
-- in ledger_archives by the same transaction). Runs with the caller's rights: only the
-- owner of the tables can drop them.
CREATE FUNCTION liaison_drop_archived_partitions(first BIGINT, last BIGINT)
RETURNS INTEGER LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    n BIGINT;
    k BIGINT;
    dropped INTEGER := 0;
BEGIN
    SELECT partition_entries INTO n FROM ledger_partitioning;
    k := (first - 1) / n;
    WHILE (k + 1) * n <= last LOOP
        IF k * n + 1 >= first THEN
            EXECUTE format('DROP TABLE IF EXISTS %I', 'ledger_entries_' || k);
            EXECUTE format('DROP TABLE IF EXISTS %I', 'messages_' || k);
            dropped := dropped + 1;
        END IF;
        k := k + 1;
    END LOOP;
    RETURN dropped;
END;
$$;
