-- Who saw or changed which referral, when, how (issue #5 item 5). Identifiers and
-- action names only: never a citizen's data, never a message's text.
CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    user_id     text        NOT NULL,
    role        text        NOT NULL,
    referral_id uuid        NOT NULL REFERENCES referrals (referral_id),
    action      text        NOT NULL,
    channel     text        NOT NULL CHECK (channel IN ('ui', 'api'))
);
CREATE INDEX audit_by_referral ON audit (referral_id, id);
CREATE INDEX audit_by_user ON audit (user_id, id);
CREATE INDEX audit_by_time ON audit (at, id);
-- Search and statistics read referrals by request time.
CREATE INDEX referrals_by_requested_at ON referrals (requested_at);
