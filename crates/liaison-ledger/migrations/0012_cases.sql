-- Cases: a projection of the ledger. Every row here is derived from `message.accepted`
-- entries (their `caseref` and `detail.case`), written by the committer in the same
-- transaction as those entries, and can be dropped and rebuilt with
-- `liaison cases replay --rebuild`.

-- One row per case reference.
CREATE TABLE cases (
    caseref     TEXT PRIMARY KEY,
    opened_seq  BIGINT NOT NULL,
    opened_at   TIMESTAMPTZ NOT NULL,
    opened_by   TEXT NOT NULL,
    updated_seq BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    -- The senders and recipients of the case's messages, sorted.
    parties     TEXT[] NOT NULL
);
CREATE INDEX cases_parties ON cases USING GIN (parties);
CREATE INDEX cases_opened_at ON cases (opened_at, caseref);

-- One row per matter of a case: a thread opened by `thread` (the opening message's id).
CREATE TABLE case_threads (
    thread      UUID PRIMARY KEY,
    caseref     TEXT NOT NULL,
    flow        TEXT NOT NULL,
    state       TEXT NOT NULL,
    closed      BOOLEAN NOT NULL,
    opened_seq  BIGINT NOT NULL,
    updated_seq BIGINT NOT NULL
);
CREATE INDEX case_threads_caseref ON case_threads (caseref);

-- Which thread each message of a case belongs to (NULL: the case, no thread).
CREATE TABLE case_messages (
    message_id UUID PRIMARY KEY,
    caseref    TEXT NOT NULL,
    thread     UUID,
    seq        BIGINT NOT NULL
);

-- The last number assigned per agency prefix and year (ECO-2026-000123).
CREATE TABLE case_counters (
    prefix TEXT NOT NULL,
    year   INT NOT NULL,
    last   BIGINT NOT NULL,
    PRIMARY KEY (prefix, year)
);
