-- Each user's jobs in the order they became available: when one user's flood fills the head of
-- the queue, a fair claim finds each waiting user's first job instead of walking the flood.
CREATE INDEX fallback_submissions_user_idx
    ON fallback_submissions ((data->>'user_id'), (coalesce(claimed_until, created_at)));
