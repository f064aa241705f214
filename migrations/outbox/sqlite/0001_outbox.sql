-- The outbox's database: the dev mailbox, sent-mail markers, the audit
-- log and token usage. Only the outbox component is granted it. Rows are
-- keyed by queue message id, so a redelivery has no second effect. Times
-- are seconds since the Unix epoch.

-- Mail handed to `email.send`, keyed by queue message id (a redelivery is
-- not a second mail).
CREATE TABLE outbox_mail (
    id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbox_mail_recipient ON outbox_mail (recipient);

-- Queue messages whose mail the SMTP server took (a redelivery is not
-- sent twice).
CREATE TABLE outbox_sent (
    id TEXT PRIMARY KEY,
    sent_at BIGINT NOT NULL
);

CREATE TABLE outbox_audit (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    user_id TEXT,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX outbox_audit_at ON outbox_audit (at);

-- Token usage per call of the inference API (`usage.recorded`), kept by the
-- outbox; keyed by queue message id.
CREATE TABLE outbox_usage (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    credential_id TEXT,
    model TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    -- how a generation ended (`stop`, `length`, `cancelled` when the
    -- client hung up part-way); NULL for embeddings
    done_reason TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX outbox_usage_user ON outbox_usage (user_id, at);
