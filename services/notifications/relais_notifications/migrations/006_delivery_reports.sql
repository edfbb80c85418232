-- What the SMS gateway's delivery reports said about a sent SMS (adapters/kannel.py):
-- `report` is the last one (submitted to the operator, buffered, delivered to the
-- telephone, failed, rejected by the operator), `delivered_at` when the telephone got
-- it. A failed report also turns the delivery `failed` with its reason. Facts only.
ALTER TABLE deliveries ADD COLUMN report text
    CHECK (report IN ('submitted', 'buffered', 'delivered', 'failed', 'rejected'));
ALTER TABLE deliveries ADD COLUMN report_at timestamptz;
ALTER TABLE deliveries ADD COLUMN delivered_at timestamptz;
