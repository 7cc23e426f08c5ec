-- Why a wrong answer is wrong, and the first test it failed (0 = the sample).
ALTER TABLE submissions ADD COLUMN reason TEXT, ADD COLUMN failed_test SMALLINT;
-- Ordered problems: the 1-based output columns of the sort key (rows tying on it may come in
-- any order); when NULL, the key is taken from the reference's ORDER BY.
ALTER TABLE problems ADD COLUMN order_key SMALLINT[];
