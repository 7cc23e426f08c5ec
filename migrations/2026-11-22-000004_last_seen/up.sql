-- User activity: written in batches from the in-process record every few seconds.
ALTER TABLE users ADD COLUMN last_seen_at TIMESTAMPTZ;
-- Access tokens revoked but not yet expired: their Redis sessions are purged when Redis returns.
CREATE INDEX auth_tokens_revoked_idx ON auth_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
