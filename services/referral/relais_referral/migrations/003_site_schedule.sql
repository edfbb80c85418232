-- The adviser's pages: where a mobile permanence stands on which day (from the sites
-- registry's `schedule`), the department a supervisor oversees, and how a visit ended.
ALTER TABLE known_sites ADD COLUMN schedule jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE accounts ADD COLUMN department text;
ALTER TABLE visits ADD COLUMN resolution text
    CHECK (resolution IN ('solved_on_the_spot', 'referred', 'abandoned'));
CREATE INDEX known_sites_by_parent ON known_sites (parent_site_id);
CREATE INDEX visits_by_site_opened ON visits (site_id, opened_at);
