-- Every ops command on a citizen's personal data (python -m relais_referral.privacy):
-- who asked, when, what, which records it concerned, what it did. It is also the audit
-- of these reads. Never the citizen's identity: ids and counts only (and the reason ops
-- gave for an erasure, sealed: adapters/sealed.py).
CREATE TABLE privacy_requests (
    request_id    uuid PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('find', 'access', 'erase', 'retention')),
    requested_by  text        NOT NULL CHECK (requested_by <> ''),
    requested_at  timestamptz NOT NULL,
    selector      text        NOT NULL,
    referral_ids  uuid[]      NOT NULL DEFAULT '{}',
    visit_ids     uuid[]      NOT NULL DEFAULT '{}',
    counts        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The other services' answers: {"notifications": "answered" | "erased" | "no answer"}.
    answers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    note          text,
    finished_at   timestamptz
);
CREATE INDEX privacy_requests_by_time ON privacy_requests (requested_at);
