-- The sender of a printed letter is the France Services site: its public name and postal
-- address, from the same `site.upserted` events (not personal data). Unknown until the
-- site's next state is read (the `sites` topic is read again from its start).
ALTER TABLE sites ADD COLUMN name text;
ALTER TABLE sites ADD COLUMN street text;
ALTER TABLE sites ADD COLUMN postcode text;
ALTER TABLE sites ADD COLUMN city text;
