DROP TABLE fallback_submissions;
DROP TABLE first_solves;
DROP TABLE submissions;
DROP TABLE problems;
DROP TABLE datasets;
DROP TABLE auth_tokens;
DROP TABLE users;
