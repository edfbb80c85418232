-- The W3C trace context (`traceparent`) of the request or record that caused the event,
-- when there was one (relais_kit.tracing): the relay sends the record in a span child of
-- it, so that one referral's journey across the services is one trace. Ids only.
ALTER TABLE outbox ADD COLUMN traceparent text;
