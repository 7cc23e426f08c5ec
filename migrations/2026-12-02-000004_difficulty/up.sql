-- How hard a problem is, for the practice page's list and for packs.
ALTER TABLE problems ADD COLUMN difficulty TEXT NOT NULL DEFAULT 'medium'
    CHECK (difficulty IN ('easy', 'medium', 'hard'));
