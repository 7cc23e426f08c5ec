ALTER TABLE problems DROP COLUMN feedback;
