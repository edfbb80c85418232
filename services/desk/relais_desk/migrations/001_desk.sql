-- The operator desk: the cases of ONE operator (the one the process serves), its
-- experts' accounts, and who opened which case. Personal data is kept only as the
-- JWE received from the platform (`personal_data`): a dump of this schema without the
-- operator's private key shows no citizen's name, contact nor summary.
CREATE TABLE experts (
    user_id        text        PRIMARY KEY,
    password_hash  text        NOT NULL,
    display_name   text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cases (
    referral_id    uuid        PRIMARY KEY,
    operator       text        NOT NULL,
    visit_id       uuid        NOT NULL,
    procedure      text        NOT NULL,
    site_id        text        NOT NULL,
    site           jsonb       NOT NULL,   -- name, kind, postcode, city: no personal data
    adviser_id     text        NOT NULL,
    adviser        jsonb       NOT NULL,   -- the adviser's work name, to call back
    consent        jsonb       NOT NULL,   -- who, when, for what
    routed_at      timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    due_at         timestamptz NOT NULL,
    status         text        NOT NULL CHECK (status IN ('new', 'acknowledged', 'info_requested',
                                   'info_received', 'answered', 'rejected', 'cancelled')),
    overdue_since  timestamptz,            -- set by referral.reminder: a flag, not a status
    case_reference text,
    personal_data  text        NOT NULL,   -- the JWE as received (summary, citizen)
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_by_status ON cases (status, due_at);
CREATE INDEX cases_by_received ON cases (received_at DESC);

-- The timeline of a case: what arrived from the platform and what the experts did.
-- `detail` is what the expert wrote (it also is in the outbox); the adviser's
-- information arrives encrypted and stays so (`personal_data`).
CREATE TABLE case_events (
    id             bigserial   PRIMARY KEY,
    referral_id    uuid        NOT NULL REFERENCES cases (referral_id),
    at             timestamptz NOT NULL,
    kind           text        NOT NULL,
    actor          text,                   -- the expert's id, NULL for the platform
    detail         jsonb       NOT NULL DEFAULT '{}',
    personal_data  text
);
CREATE INDEX case_events_by_case ON case_events (referral_id, id);

-- Who opened which case (its personal data decrypted on their screen).
CREATE TABLE case_views (
    referral_id    uuid        NOT NULL,
    user_id        text        NOT NULL,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_views_by_case ON case_views (referral_id, at);
