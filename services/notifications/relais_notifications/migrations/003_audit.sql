-- Every read of personal data: one row per referral a list returned, per letter read,
-- per access request answered. Identifiers and action names only, never content.
CREATE TABLE audit (
    id           bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    user_id      text        NOT NULL,
    role         text        NOT NULL,
    action       text        NOT NULL CHECK (action IN ('list', 'letter', 'access_request')),
    referral_id  uuid        NOT NULL,
    delivery_id  uuid
);
CREATE INDEX audit_by_referral ON audit (referral_id, at);
CREATE INDEX audit_by_user ON audit (user_id, at);
