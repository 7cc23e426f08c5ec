ALTER TABLE fallback_submissions DROP COLUMN claimed_until, DROP COLUMN attempts;
