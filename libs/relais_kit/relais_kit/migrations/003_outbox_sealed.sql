-- Outbox payloads carry personal data (the citizen's contact on referral.answered,
-- messages, sealed inbox data): they are stored sealed (relais_kit.vault), as text.
-- Rows written before stay readable and are sealed by the re-sealing loop.
ALTER TABLE outbox ALTER COLUMN data TYPE text USING data::text;
-- The retention job prunes published rows by age.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX processed_events_by_time ON processed_events (processed_at);
