-- Signed-in sessions, kept on the server so that signing out, or closing an account,
-- ends them at once (a copied cookie or token then opens nothing). The session id
-- itself is never stored: only its SHA-256, so a copy of this table opens no session.
CREATE TABLE sessions (
    id_hash      text        PRIMARY KEY,
    user_id      text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('ui', 'api')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
