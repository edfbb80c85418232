-- The content of a delivery (address, subject, body: sealed, see adapters/store.py) is
-- erased when its retention period ends or the citizen asks; the facts stay.
ALTER TABLE deliveries ALTER COLUMN body DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN erased_at timestamptz;
CREATE INDEX deliveries_to_erase ON deliveries (created_at) WHERE erased_at IS NULL;
