-- When the referral was found overdue: set once, in the same transaction as the
-- referral.overdue and referral.reminder events, so they are sent exactly once.
ALTER TABLE referrals ADD COLUMN overdue_at timestamptz;
ALTER TABLE referrals ADD COLUMN closed_outcome text;
CREATE INDEX referrals_awaiting_answer ON referrals (due_at)
    WHERE overdue_at IS NULL AND status IN ('routed', 'acknowledged', 'info_requested');
