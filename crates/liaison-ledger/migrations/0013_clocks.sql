-- Legal clocks: a projection of the ledger like the cases. A row is the last start of one
-- clock in one thread, derived from `detail.clocks` (started, stopped) and
-- `detail.clock_stage` (the watcher's notices) of `message.accepted` entries; written by
-- the committer in the same transaction as those entries and rebuilt by
-- `liaison cases replay --rebuild`.
CREATE TABLE case_clocks (
    thread         UUID NOT NULL,
    clock          TEXT NOT NULL,
    caseref        TEXT NOT NULL,
    flow           TEXT NOT NULL,
    -- 'deadline' (an answer owed) or 'window' (a period to act in)
    kind           TEXT NOT NULL,
    -- The message that started it; its addressees owe it.
    origin         UUID NOT NULL,
    started_seq    BIGINT NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    -- NULL when it could not be computed (`due_error` says why).
    due_at         TIMESTAMPTZ,
    due_error      TEXT,
    owed_by        TEXT[] NOT NULL,
    stopped_seq    BIGINT,
    -- 'answered' or 'closed'
    stopped_reason TEXT,
    -- Keys of the watcher's notices recorded for this start.
    stages_sent    TEXT[] NOT NULL,
    PRIMARY KEY (thread, clock)
);
-- The watcher's scan and the overdue views: running clocks by due instant.
CREATE INDEX case_clocks_running ON case_clocks (due_at) WHERE stopped_seq IS NULL;
CREATE INDEX case_clocks_caseref ON case_clocks (caseref);
