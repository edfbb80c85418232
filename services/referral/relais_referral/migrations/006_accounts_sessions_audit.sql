-- Accounts that can be closed, agents bound to their identity provider, and the audit
-- of visit pages (issue #9).

-- A closed account signs in no more (password or ProConnect); closing it ends all of
-- its sessions in the same transaction (relais_kit.sessions).
ALTER TABLE accounts ADD COLUMN disabled_at timestamptz;
-- An account opened for ProConnect only has no password.
ALTER TABLE accounts ALTER COLUMN password_hash DROP NOT NULL;
-- The agent the identity provider names: its issuer and `sub`, never the e-mail alone.
-- Bound on the agent's first ProConnect sign-in (by a verified e-mail) or beforehand by
-- `python -m relais_referral.accounts add --oidc-subject`.
ALTER TABLE accounts ADD COLUMN oidc_issuer text;
ALTER TABLE accounts ADD COLUMN oidc_subject text;
ALTER TABLE accounts ADD CONSTRAINT accounts_oidc_binding_whole
    CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL));
CREATE UNIQUE INDEX accounts_by_oidc_subject ON accounts (oidc_issuer, oidc_subject);
-- A supervisor's scope is their department alone: an account that named it through a
-- site gets the site's department.
UPDATE accounts a SET department = s.department FROM known_sites s
    WHERE a.role = 'supervisor' AND a.department IS NULL AND a.site_id = s.site_id;

-- Reading a visit (a citizen's identity and contact) is audited like a referral's view.
ALTER TABLE audit ADD COLUMN visit_id uuid REFERENCES visits (visit_id);
ALTER TABLE audit ALTER COLUMN referral_id DROP NOT NULL;
ALTER TABLE audit ADD CONSTRAINT audit_names_a_referral_or_a_visit
    CHECK (referral_id IS NOT NULL OR visit_id IS NOT NULL);
CREATE INDEX audit_by_visit ON audit (visit_id, id) WHERE visit_id IS NOT NULL;
