-- Token usage per call of the inference API (`usage.recorded`), kept by the
-- outbox; keyed by queue message id.
CREATE TABLE outbox_usage (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    credential_id TEXT,
    model TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX outbox_usage_user ON outbox_usage (user_id, at);
