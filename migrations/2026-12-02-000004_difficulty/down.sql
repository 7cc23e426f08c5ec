ALTER TABLE problems DROP COLUMN difficulty;
