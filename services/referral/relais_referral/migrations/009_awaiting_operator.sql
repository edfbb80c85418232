-- Issue #11: the gauges of referrals waiting on each operator (overdue, unacknowledged,
-- the oldest unacknowledged), counted every few seconds: the referrals still open on
-- the operator's side are a handful, the table is every referral kept.
CREATE INDEX referrals_awaiting_operator ON referrals (operator)
    WHERE status IN ('routed', 'acknowledged', 'info_requested');
