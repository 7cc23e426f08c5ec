DROP INDEX auth_tokens_revoked_idx;
ALTER TABLE users DROP COLUMN last_seen_at;
