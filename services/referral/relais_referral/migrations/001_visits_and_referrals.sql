CREATE TABLE accounts (
    user_id       text PRIMARY KEY,
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('adviser', 'supervisor', 'ops')),
    site_id       text,
    display_name  text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- This service's own view of the sites registry, fed by the `sites` topic.
CREATE TABLE known_sites (
    site_id        text PRIMARY KEY,
    name           text        NOT NULL,
    kind           text        NOT NULL,
    postcode       text        NOT NULL,
    city           text        NOT NULL,
    department     text        NOT NULL,
    operators      text[]      NOT NULL,
    parent_site_id text,
    retired        boolean     NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE visits (
    visit_id   uuid PRIMARY KEY,
    site_id    text        NOT NULL,
    adviser_id text        NOT NULL,
    channel    text        NOT NULL,
    citizen    jsonb       NOT NULL,
    opened_at  timestamptz NOT NULL,
    closed_at  timestamptz
);

CREATE TABLE referrals (
    referral_id            uuid PRIMARY KEY,
    visit_id               uuid        NOT NULL REFERENCES visits (visit_id),
    operator               text        NOT NULL,
    procedure              text        NOT NULL,
    site_id                text        NOT NULL,
    adviser_id             text        NOT NULL,
    summary                text        NOT NULL,
    consent_given_at       timestamptz NOT NULL,
    requested_at           timestamptz NOT NULL,
    status                 text        NOT NULL,
    due_at                 timestamptz,
    supersedes_referral_id uuid REFERENCES referrals (referral_id),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referrals_by_site ON referrals (site_id, status);
CREATE INDEX referrals_by_visit ON referrals (visit_id);

-- Every transition and every notable fact of a referral, in order.
CREATE TABLE referral_timeline (
    id          bigserial PRIMARY KEY,
    referral_id uuid        NOT NULL REFERENCES referrals (referral_id),
    event       text        NOT NULL,
    status      text,
    actor       text        NOT NULL,
    at          timestamptz NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX referral_timeline_by_referral ON referral_timeline (referral_id, id);
