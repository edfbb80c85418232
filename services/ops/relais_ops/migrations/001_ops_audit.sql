-- What the console's users did (signing in and out, replaying a dead letter, retrying
-- or discarding a parked row, unmasking...): who, when, on what, why. Ids only, never
-- personal data, in every column including `details`.
CREATE TABLE ops_audit (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    user_id   text        NOT NULL,
    action    text        NOT NULL,
    target    text        NOT NULL DEFAULT '',
    reason    text        NOT NULL DEFAULT '',
    details   jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ops_audit_by_time ON ops_audit (at DESC);
CREATE INDEX ops_audit_by_user ON ops_audit (user_id, at DESC);

-- The referral service's access token of each signed-in console session, kept here and
-- never in the browser: the console calls the services' ops APIs with it. Goes with
-- its session (signing out deletes the session's row, and this one with it).
CREATE TABLE console_tokens (
    session_hash  text        PRIMARY KEY REFERENCES sessions (id_hash) ON DELETE CASCADE,
    access_token  text        NOT NULL,
    expires_at    timestamptz NOT NULL
);
