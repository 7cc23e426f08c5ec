CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin      BOOLEAN NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Case-insensitive uniqueness: "Alice" and "alice" are one account name.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Bearer tokens are stored hashed; a login creates one family (access + refresh),
-- logout and refresh revoke by family or by token.
CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    family     UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX auth_tokens_family_idx ON auth_tokens (family);

CREATE TABLE datasets (
    name          TEXT PRIMARY KEY,
    script_sha256 TEXT NOT NULL,
    tables        JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE problems (
    id               BIGSERIAL PRIMARY KEY,
    slug             TEXT NOT NULL UNIQUE,
    title            TEXT NOT NULL,
    statement        TEXT NOT NULL,
    topic            TEXT NOT NULL,
    dataset          TEXT NOT NULL REFERENCES datasets (name),
    reference_sql    TEXT NOT NULL,
    ordered          BOOLEAN NOT NULL DEFAULT false,
    writeable        BOOLEAN NOT NULL DEFAULT false,
    check_table      TEXT,
    time_limit_ms    INTEGER NOT NULL,
    expected_columns JSONB NOT NULL,
    expected_rows    JSONB NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (NOT writeable OR check_table IS NOT NULL)
);
CREATE INDEX problems_topic_idx ON problems (topic);

CREATE TABLE submissions (
    id            UUID PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id),
    problem_id    BIGINT NOT NULL REFERENCES problems (id),
    sql_query     TEXT NOT NULL,
    status        TEXT NOT NULL,
    rows_returned INTEGER,
    expected_rows INTEGER,
    duration_ms   INTEGER,
    message       TEXT,
    sqlstate      TEXT,
    diff          JSONB,
    cached        BOOLEAN NOT NULL DEFAULT false,
    queue         TEXT NOT NULL,
    request_id    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    graded_at     TIMESTAMPTZ
);
-- Idempotency key: one submission per (user, request_id); older than 24 h keys are released.
CREATE UNIQUE INDEX submissions_request_key ON submissions (user_id, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX submissions_user_idx ON submissions (user_id, created_at DESC);
CREATE INDEX submissions_problem_idx ON submissions (problem_id);
CREATE INDEX submissions_pending_idx ON submissions (created_at)
    WHERE status IN ('queued', 'running');

-- The record of first solves decides scores: one row per (user, problem), whatever
-- is replayed or regraded.
CREATE TABLE first_solves (
    user_id       BIGINT NOT NULL REFERENCES users (id),
    problem_id    BIGINT NOT NULL REFERENCES problems (id),
    submission_id UUID NOT NULL REFERENCES submissions (id),
    solved_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, problem_id)
);
CREATE INDEX first_solves_problem_idx ON first_solves (problem_id);

-- Postgres queue used while Redis is unavailable.
CREATE TABLE fallback_submissions (
    id         UUID PRIMARY KEY,
    data       JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX fallback_submissions_created_idx ON fallback_submissions (created_at);
