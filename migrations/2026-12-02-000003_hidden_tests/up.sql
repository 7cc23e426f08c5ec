-- Hidden tests (API.md v1.1). The scripts are kept so that generated tests (and a sandbox
-- server that comes back empty) can be rebuilt from the platform database alone.
ALTER TABLE datasets ADD COLUMN script TEXT;
CREATE TABLE dataset_tests (
    dataset TEXT NOT NULL REFERENCES datasets (name) ON DELETE CASCADE,
    test SMALLINT NOT NULL CHECK (test BETWEEN 1 AND 20),
    script TEXT NOT NULL,
    script_sha256 TEXT NOT NULL,
    tables JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, test)
);
-- How many tests to derive from the sample, and the reference's result on each hidden test:
-- [{"data": "u1" | "g2", "rows": [...]}].
ALTER TABLE problems
    ADD COLUMN generated_tests SMALLINT NOT NULL DEFAULT 3 CHECK (generated_tests BETWEEN 0 AND 10),
    ADD COLUMN hidden_tests JSONB NOT NULL DEFAULT '[]';
-- A small subset of a hidden test's rows on which a wrong answer still differs.
ALTER TABLE submissions ADD COLUMN counterexample JSONB;
