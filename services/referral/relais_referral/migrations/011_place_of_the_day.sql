-- Where an adviser works today (issue #12 item 3): their home site or one of its
-- permanences, chosen once a day and kept across sign-ins until the day ends (Paris
-- date). One row per adviser: the next day's choice replaces it.
CREATE TABLE places_of_the_day (
    user_id   text        PRIMARY KEY REFERENCES accounts (user_id) ON DELETE CASCADE,
    day       date        NOT NULL,
    site_id   text        NOT NULL,
    chosen_at timestamptz NOT NULL DEFAULT now()
);
