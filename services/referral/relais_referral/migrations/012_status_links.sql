-- The citizen's status link (issue #13 item 3): one live code per referral, stored only
-- as a keyed hash (the vault's blind index), never in clear. Printing a new receipt
-- replaces it (the old code stops working). `views` counts the page's views: no
-- address, no cookie, nothing else about who looked.
CREATE TABLE status_links (
    referral_id uuid        PRIMARY KEY REFERENCES referrals (referral_id) ON DELETE CASCADE,
    code_index  text        NOT NULL UNIQUE,
    made_at     timestamptz NOT NULL,
    made_by     text        NOT NULL,
    views       integer     NOT NULL DEFAULT 0,
    viewed_at   timestamptz
);
