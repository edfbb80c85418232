-- Transactional outbox: written in the same transaction as the state change it
-- announces, published by the relay in id order, kept after publication so that
-- events can be re-published from PostgreSQL (the system of record).
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    topic         text        NOT NULL,
    record_key    text        NOT NULL,
    event_id      text        NOT NULL UNIQUE,
    event_type    text        NOT NULL,
    subject       text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    dataschema    text,
    data          jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Idempotent consumer: the ids of the events a consumer has handled, recorded in the
-- same transaction as the work they caused.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
