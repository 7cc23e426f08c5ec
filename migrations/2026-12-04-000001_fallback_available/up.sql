-- The fallback queue in the order jobs became available, which claims walk: a claim reads the
-- jobs it takes (and those it passes over), not the whole backlog. The same index finds the
-- live leases (theirs is the future end), which fair claims count by user.
CREATE INDEX fallback_submissions_available_idx
    ON fallback_submissions ((coalesce(claimed_until, created_at)));
