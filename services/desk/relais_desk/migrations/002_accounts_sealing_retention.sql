-- Issue #9. An expert account can be closed (`disabled_at`: no sign-in, its sessions
-- ended). The experts' texts (`case_events.detail`) and the operator's case reference
-- are sealed at rest (relais_kit.vault: `rv1:…` text; values written before stay in
-- clear until the re-sealing loop seals them). A case closed for longer than
-- RELAIS_DESK_RETENTION_DAYS loses its personal data (`erased_at`): the JWEs, the
-- texts and the reference become NULL; what is left says which procedure, when, who.
ALTER TABLE experts ADD COLUMN disabled_at timestamptz;

ALTER TABLE cases
    ALTER COLUMN personal_data DROP NOT NULL,
    ADD COLUMN closed_at timestamptz,       -- when it became answered, rejected or cancelled
    ADD COLUMN erased_at timestamptz;       -- when its personal data was erased
UPDATE cases SET closed_at = updated_at WHERE status IN ('answered', 'rejected', 'cancelled');
CREATE INDEX cases_to_erase ON cases (closed_at) WHERE erased_at IS NULL AND closed_at IS NOT NULL;

ALTER TABLE case_events
    ALTER COLUMN detail DROP DEFAULT,
    ALTER COLUMN detail DROP NOT NULL,
    ALTER COLUMN detail TYPE text USING detail::text;
