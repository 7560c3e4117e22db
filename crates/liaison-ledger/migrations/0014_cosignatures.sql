-- Witness cosignatures of checkpoints (C2SP tlog-cosignature, cosignature/v1): one per
-- witness and checkpoint, the signature line as the witness made it. Checked against the
-- configured witness keys before they are stored; append-only like the checkpoints.
CREATE TABLE checkpoint_cosignatures (
    tree_size   BIGINT NOT NULL,
    witness     TEXT NOT NULL,
    line        TEXT NOT NULL,
    cosigned_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tree_size, witness)
);

CREATE TRIGGER checkpoint_cosignatures_append_only
    BEFORE UPDATE OR DELETE ON checkpoint_cosignatures
    FOR EACH ROW EXECUTE FUNCTION liaison_refuse_change();
CREATE TRIGGER checkpoint_cosignatures_no_truncate
    BEFORE TRUNCATE ON checkpoint_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION liaison_refuse_change();
