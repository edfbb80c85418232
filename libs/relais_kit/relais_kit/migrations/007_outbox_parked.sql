-- A row that can never be published (larger than the broker accepts, refused by the
-- broker for good, or that no longer opens) is set aside, "parked", with its reason,
-- instead of being retried forever in front of every row behind it. Rows of the same
-- key behind a parked row wait for it (a referral's events keep their order); the
-- others go on. Ops retry it (once the cause is fixed) or discard it:
-- `python -m relais_kit.parked`, each action kept in outbox_actions.
ALTER TABLE outbox
    ADD COLUMN parked_at    timestamptz,
    ADD COLUMN park_reason  text,
    ADD COLUMN discarded_at timestamptz;
CREATE INDEX outbox_parked ON outbox (record_key, id)
    WHERE parked_at IS NOT NULL AND published_at IS NULL AND discarded_at IS NULL;

-- Who retried or discarded which parked row, when and why. Ids and times only.
CREATE TABLE outbox_actions (
    id           bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    action       text        NOT NULL CHECK (action IN ('retry', 'discard')),
    outbox_id    bigint      NOT NULL,
    event_type   text        NOT NULL,
    topic        text        NOT NULL,
    requested_by text        NOT NULL,
    reason       text        NOT NULL
);
