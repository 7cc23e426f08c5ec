-- Each user's place on every board, kept in step with first_solves in the same transactions,
-- so boards are served from Postgres (while Redis is down) by an index in board order rather
-- than by aggregating every solve. topic '' is the global board.
CREATE TABLE standings (
    user_id     BIGINT NOT NULL REFERENCES users (id),
    topic       TEXT NOT NULL,
    score       INTEGER NOT NULL,
    reached_at  TIMESTAMPTZ NOT NULL,
    -- The tie-break Redis applies: reached to the second, then member name descending.
    reached_sec BIGINT NOT NULL,
    member      TEXT GENERATED ALWAYS AS ('user:' || user_id) STORED,
    PRIMARY KEY (user_id, topic)
);
CREATE INDEX standings_board_idx ON standings (topic, score DESC, reached_sec, member DESC);

INSERT INTO standings (user_id, topic, score, reached_at, reached_sec)
SELECT fs.user_id, coalesce(p.topic, ''), count(*), max(fs.solved_at), extract(epoch FROM max(fs.solved_at))::bigint
FROM first_solves fs JOIN problems p ON p.id = fs.problem_id
GROUP BY GROUPING SETS ((fs.user_id), (fs.user_id, p.topic));
