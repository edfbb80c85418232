-- Losing the broker (relais_kit.recovery): the marker this schema last left on the
-- broker (a committed offset in a consumer group of its own) and the cluster id it
-- was seen on. A broker that no longer holds the marker has lost what was published
-- to it: the topics are recreated and the outbox re-published from PostgreSQL.
CREATE TABLE broker_marker (
    singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    marker       bigint      NOT NULL,
    topic        text        NOT NULL,
    cluster_id   text,
    set_at       timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz NOT NULL DEFAULT now()
);

-- Every re-publication, automatic (broker lost) or asked for (python -m
-- relais_kit.republish): who, why, what range, how many rows. Ids and times only.
CREATE TABLE republish_runs (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    requested_by text       NOT NULL,
    reason      text        NOT NULL,
    since       timestamptz,
    until       timestamptz,
    subject     text,
    topics      text[],
    dry_run     boolean     NOT NULL,
    rows        integer     NOT NULL
);
