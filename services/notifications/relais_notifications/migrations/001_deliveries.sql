-- Every delivery the service makes or will make: to the citizen (e-mail, SMS,
-- printable letter) and to the adviser's screen. One per (cause event, recipient):
-- the same answer never gives two deliveries to the same person.
CREATE TABLE deliveries (
    id               uuid        PRIMARY KEY,
    referral_id      uuid        NOT NULL,
    cause_event_id   text        NOT NULL,
    adviser_id       text        NOT NULL,
    site_id          text        NOT NULL,
    recipient        text        NOT NULL CHECK (recipient IN ('citizen', 'adviser')),
    channel          text        NOT NULL CHECK (channel IN ('email', 'sms', 'letter', 'adviser_screen')),
    status           text        NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    -- Personal data, never returned by the list API nor logged: the e-mail mailbox or
    -- phone number; the letter's address lives in its body.
    address          text,
    subject          text,
    body             text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    failed_at        timestamptz,
    UNIQUE (cause_event_id, recipient)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_referral ON deliveries (referral_id, created_at);
CREATE INDEX deliveries_by_adviser ON deliveries (adviser_id, created_at);
