-- The Merkle tree over ledger_entries.leaf_hash (RFC 9162), stored as the hashes of its
-- complete subtrees: (level, idx) covers the leaves idx·2^level .. (idx+1)·2^level - 1
-- (leaf index = seq - 1). Level 0 is ledger_entries.leaf_hash itself and is not repeated
-- here, so the table holds n - popcount(n) rows for n entries: about one hash per entry.
-- Rows are written in the same transaction as the entries that complete them; any proof
-- or tree head then needs O(log n) rows and no rescan.
CREATE TABLE ledger_tree_nodes (
    level SMALLINT NOT NULL CHECK (level BETWEEN 1 AND 63),
    idx   BIGINT NOT NULL CHECK (idx >= 0),
    hash  BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed tree heads, one per tree size, in the C2SP checkpoint text format (`note`).
CREATE TABLE ledger_checkpoints (
    tree_size BIGINT PRIMARY KEY CHECK (tree_size >= 1),
    root_hash BYTEA NOT NULL CHECK (octet_length(root_hash) = 32),
    signed_at TIMESTAMPTZ NOT NULL,
    note      TEXT NOT NULL
);

CREATE TRIGGER ledger_tree_nodes_append_only
    BEFORE UPDATE OR DELETE ON ledger_tree_nodes
    FOR EACH ROW EXECUTE FUNCTION liaison_refuse_change();
CREATE TRIGGER ledger_tree_nodes_no_truncate
    BEFORE TRUNCATE ON ledger_tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION liaison_refuse_change();
CREATE TRIGGER ledger_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION liaison_refuse_change();
CREATE TRIGGER ledger_checkpoints_no_truncate
    BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION liaison_refuse_change();
