-- Finding a referral by the citizen's name and by the operator's reference, without
-- either stored in clear (issue #12 item 5): keyed hashes (`Vault.blind_index`) of the
-- starts of each word of the citizen's names (domain/identity.py name_prefixes), and of
-- the reference the operator gave on acknowledging. Set when the visit is opened or the
-- referral acknowledged; rows written before are filled in by the service at start-up
-- (adapters/store.py index_missing: the key is the vault's, not the database's).
-- NULL once erased.
ALTER TABLE visits ADD COLUMN name_index text[];
CREATE INDEX visits_by_name ON visits USING gin (name_index);
ALTER TABLE referrals ADD COLUMN operator_reference_index text;
CREATE INDEX referrals_by_operator_reference ON referrals (operator_reference_index)
    WHERE operator_reference_index IS NOT NULL;

-- Who searched or listed citizens by name, when, how many referrals they got: never the
-- words typed (a keyed hash of them, to tell the same search made twice).
CREATE TABLE search_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    user_id    text        NOT NULL,
    role       text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('name', 'reference', 'list')),
    query_hash text,
    results    integer     NOT NULL,
    channel    text        NOT NULL CHECK (channel IN ('ui', 'api'))
);
CREATE INDEX search_audit_by_user ON search_audit (user_id, id);
