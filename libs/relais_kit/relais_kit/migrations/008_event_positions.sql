-- Where each event went and where it came from, so that one referral's journey can be
-- shown from PostgreSQL without reading the topics (relais_kit.ops_api): the position
-- the broker gave each published row, and the subject, type and position of each
-- event a consumer handled. Ids, types and positions only. Rows from before stay
-- without them (NULL).
ALTER TABLE outbox
    ADD COLUMN published_partition int,
    ADD COLUMN published_offset    bigint;
CREATE INDEX outbox_subject ON outbox (subject);

ALTER TABLE processed_events
    ADD COLUMN subject          text,
    ADD COLUMN event_type       text,
    ADD COLUMN record_partition int,
    ADD COLUMN record_offset    bigint;
CREATE INDEX processed_events_subject ON processed_events (subject) WHERE subject IS NOT NULL;
