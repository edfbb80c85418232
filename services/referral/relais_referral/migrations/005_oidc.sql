-- Sign-in through ProConnect (OpenID Connect): the agent the provider names is the
-- local account with the same e-mail address (compared without case). Accounts are
-- never created by a sign-in; an account without an e-mail signs in only locally.
ALTER TABLE accounts ADD COLUMN email text
    CHECK (email IS NULL OR (email = btrim(email) AND email LIKE '_%@_%'));
CREATE UNIQUE INDEX accounts_by_email ON accounts (lower(email));
