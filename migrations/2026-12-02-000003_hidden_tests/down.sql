ALTER TABLE submissions DROP COLUMN counterexample;
ALTER TABLE problems DROP COLUMN hidden_tests, DROP COLUMN generated_tests;
DROP TABLE dataset_tests;
ALTER TABLE datasets DROP COLUMN script;
