-- The W3C trace context (`traceparent`) of the consumer span that queued the delivery
-- (relais_kit.tracing): the delivery loop sends it in a span child of it, so the
-- citizen's notification stays in the referral's trace. Ids only.
ALTER TABLE deliveries ADD COLUMN traceparent text;
