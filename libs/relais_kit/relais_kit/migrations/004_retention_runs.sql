-- What each run of the retention job did (relais_kit.retention): how many rows of each
-- kind it anonymised or deleted. Counts only, never what the rows held.
CREATE TABLE retention_runs (
    id           bigserial   PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    trigger      text        NOT NULL CHECK (trigger IN ('schedule', 'command')),
    counts       jsonb       NOT NULL
);
CREATE INDEX retention_runs_by_time ON retention_runs (started_at);
