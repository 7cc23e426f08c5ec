-- Executors grade fallback jobs straight from Postgres: a claim is a lease that the claimer
-- renews while grading; a job whose claimer died is claimed again once it lapses.
ALTER TABLE fallback_submissions
    ADD COLUMN claimed_until TIMESTAMPTZ,
    ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
