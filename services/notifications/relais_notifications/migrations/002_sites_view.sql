-- This service's view of the sites registry, from the compacted `sites` topic: what
-- deciding who may read a site's deliveries needs (relais_kit.access). A state older
-- than the stored one is ignored (a replay of the topic never goes back in time).
CREATE TABLE sites (
    site_id          text        PRIMARY KEY,
    parent_site_id   text,
    department       text,       -- unknown for a site only ever seen retired
    retired          boolean     NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX sites_by_parent ON sites (parent_site_id);
