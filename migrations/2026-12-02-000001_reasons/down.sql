ALTER TABLE problems DROP COLUMN order_key;
ALTER TABLE submissions DROP COLUMN reason, DROP COLUMN failed_test;
