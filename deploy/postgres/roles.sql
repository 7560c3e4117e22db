-- Roles for a production liaison database. Run as the database owner after the schema
-- exists (start `liaison serve` once as the owner, or any liaison command that opens the
-- ledger: it applies the migrations), e.g.
--   psql -d liaison -v broker_password="'…'" -f deploy/postgres/roles.sql
--
-- liaison_broker: what the running broker needs and nothing more. On the ledger tables it
-- may only INSERT and SELECT: even without the append-only triggers it cannot change or
-- remove a recorded entry, message, tree node or checkpoint. The outbox is the relay's
-- mutable working state (every transition is also a ledger entry), so it may update it.
-- liaison_auditor: read-only, for `liaison ledger verify|export|replay`.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'liaison_broker') THEN
        CREATE ROLE liaison_broker LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'liaison_auditor') THEN
        CREATE ROLE liaison_auditor LOGIN;
    END IF;
END
$$;
\if :{?broker_password}
ALTER ROLE liaison_broker PASSWORD :broker_password;
\endif

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM liaison_broker, liaison_auditor;
GRANT USAGE ON SCHEMA public TO liaison_broker, liaison_auditor;

-- The ledger: append and read only.
GRANT SELECT, INSERT ON ledger_entries, messages, ledger_tree_nodes, ledger_checkpoints,
    checkpoint_cosignatures
    TO liaison_broker;
-- The relay's working state.
GRANT SELECT, INSERT, UPDATE ON outbox TO liaison_broker;
GRANT USAGE, SELECT ON SEQUENCE outbox_delivery_id_seq TO liaison_broker;
-- The wrapped data keys of sealed message bodies: erasure destroys them (UPDATE to NULL),
-- rotation re-wraps them. Never DELETE: an erased key's row records the erasure's seq.
GRANT SELECT, INSERT, UPDATE ON message_keys TO liaison_broker;
-- The case projection, kept by the committer (every change derives from a ledger entry).
GRANT SELECT, INSERT, UPDATE ON cases, case_threads, case_messages, case_counters, case_clocks
    TO liaison_broker;
-- The broker checks at start that every migration is applied; it never applies one itself
-- under this role (applying needs the owner).
GRANT SELECT ON _sqlx_migrations TO liaison_broker;
-- Archived ranges (`liaison ledger archive`, run as the owner): the broker reads what it
-- kept of them — leaf hashes for proofs, message ids for duplicate detection — and creates
-- the next partitions only through liaison_extend_partitions, which runs as the owner.
GRANT SELECT ON ledger_archives, ledger_archived_leaves, archived_messages, ledger_partitioning
    TO liaison_broker, liaison_auditor;
-- Full verifications (`liaison ledger verify`), shown on the console's overview: the
-- broker reads them; whoever verifies records its result.
GRANT SELECT ON ledger_verifications TO liaison_broker;
GRANT SELECT, INSERT ON ledger_verifications TO liaison_auditor;

GRANT SELECT ON ledger_entries, messages, ledger_tree_nodes, ledger_checkpoints, outbox,
    checkpoint_cosignatures,
    cases, case_threads, case_messages, case_counters, case_clocks, _sqlx_migrations,
    message_keys
    TO liaison_auditor;
