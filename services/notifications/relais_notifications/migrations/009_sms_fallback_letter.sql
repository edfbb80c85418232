-- The letter to print instead of an SMS that fails for good (the delivery loop gives up,
-- or a delivery report says it never reached the telephone), when the citizen also has
-- a postal address: written with the SMS, sealed like `subject` and `body` (bound to the
-- SMS's id), erased with them, and cleared once the SMS is settled either way.
ALTER TABLE deliveries ADD COLUMN fallback_subject text;
ALTER TABLE deliveries ADD COLUMN fallback_body text;
-- That letter is a second delivery to the citizen for the same answer, on another
-- channel: one per (cause event, recipient, channel). The same event consumed twice
-- still gives no second row: each delivery's id is derived from (cause event,
-- recipient) — and the letter's from the SMS's — and is the primary key.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_cause_event_id_recipient_key;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_cause_event_recipient_channel_key
    UNIQUE (cause_event_id, recipient, channel);
