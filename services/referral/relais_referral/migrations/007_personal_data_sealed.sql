-- Personal data sealed at rest (relais_kit.vault, adapters/sealed.py): the citizen's
-- identity and contact, summaries and timeline details become sealed text. Rows written
-- before stay readable as they are and are sealed by the re-sealing loop. Each may be
-- erased (NULL, or a timeline detail stripped) when its retention period ends.
ALTER TABLE visits ALTER COLUMN citizen TYPE text USING citizen::text;
ALTER TABLE visits ALTER COLUMN citizen DROP NOT NULL;
ALTER TABLE visits ADD COLUMN anonymised_at timestamptz;
ALTER TABLE referrals ALTER COLUMN summary DROP NOT NULL;
ALTER TABLE referrals ADD COLUMN anonymised_at timestamptz;
ALTER TABLE referral_timeline ALTER COLUMN detail DROP DEFAULT;
ALTER TABLE referral_timeline ALTER COLUMN detail TYPE text USING detail::text;
ALTER TABLE referral_timeline ALTER COLUMN detail SET DEFAULT '{}';

-- Finding a citizen's records without their identity in clear: keyed hashes (HMAC,
-- `Vault.blind_index`) of the normalised family name, given name and birth date, and
-- of each e-mail address or phone number they gave. Set at visit opening, NULL once
-- erased. Visits opened before have none (found by visit or referral id only).
ALTER TABLE visits ADD COLUMN identity_index text;
ALTER TABLE visits ADD COLUMN contact_index text[];
CREATE INDEX visits_by_identity ON visits (identity_index) WHERE identity_index IS NOT NULL;
CREATE INDEX visits_by_contact ON visits USING gin (contact_index);

-- The retention job looks for what is due: referrals by their last change, visits by
-- their closing, both only while they still hold personal data.
CREATE INDEX referrals_holding_personal_data ON referrals (updated_at) WHERE anonymised_at IS NULL;
CREATE INDEX visits_holding_personal_data ON visits (opened_at) WHERE anonymised_at IS NULL;
