-- What results tell the solver: 'full' (diff, reason, messages) or 'verdict' (contests).
ALTER TABLE problems ADD COLUMN feedback TEXT NOT NULL DEFAULT 'full'
    CHECK (feedback IN ('full', 'verdict'));
