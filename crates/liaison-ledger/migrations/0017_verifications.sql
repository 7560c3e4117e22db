-- Full verifications of the database ledger (`liaison ledger verify`), newest last: when,
-- how many entries, and whether every check held. Working state for the console's
-- overview, not part of the record: the entries themselves are what an auditor checks.
CREATE TABLE ledger_verifications (
    verified_at TIMESTAMPTZ NOT NULL,
    entries     BIGINT NOT NULL,
    ok          BOOLEAN NOT NULL,
    findings    BIGINT NOT NULL
);
CREATE INDEX ledger_verifications_at ON ledger_verifications (verified_at);
