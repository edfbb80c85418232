-- The registry of France Services sites. A retired site stays (retired_at set): its
-- id remains known to the visits and referrals that mention it.
CREATE TABLE sites (
    site_id         text        PRIMARY KEY,
    name            text        NOT NULL,
    kind            text        NOT NULL
                    CHECK (kind IN ('fixed', 'post_office', 'mobile_permanence', 'bus')),
    street          text,
    postcode        text        NOT NULL,
    city            text        NOT NULL,
    department      text        NOT NULL,
    operators       text[]      NOT NULL,
    parent_site_id  text        REFERENCES sites (site_id),
    schedule        jsonb       NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    retired_at      timestamptz
);
CREATE INDEX sites_parent ON sites (parent_site_id) WHERE parent_site_id IS NOT NULL;
CREATE INDEX sites_department ON sites (department);
CREATE INDEX sites_operators ON sites USING gin (operators);
