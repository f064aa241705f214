-- Accounts, sessions, password resets and the root folders of the auth
-- service; the outbox's mailbox and audit log. Times are seconds since the
-- Unix epoch.
CREATE TABLE auth_users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    -- lower-case username: names differing only in case are one name
    username_key TEXT NOT NULL UNIQUE,
    -- normalized (lower-case) address
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    -- comma-separated: User, Admin
    roles TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    locked_until BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE folders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES auth_users (id),
    parent_id TEXT REFERENCES folders (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX folders_user ON folders (user_id);

-- One row per login: the family of refresh tokens rotated from it. A
-- refresh locks this row, so a revocation never misses a token issued
-- while it runs.
CREATE TABLE auth_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES auth_users (id),
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

-- Refresh tokens by SHA-256, rotated on every use.
CREATE TABLE auth_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES auth_users (id),
    session_id TEXT NOT NULL REFERENCES auth_sessions (id),
    -- the access token issued with it, revoked with the family
    access_token_id TEXT NOT NULL,
    access_expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX auth_refresh_tokens_session ON auth_refresh_tokens (session_id);
CREATE INDEX auth_refresh_tokens_user ON auth_refresh_tokens (user_id);
CREATE INDEX auth_refresh_tokens_access ON auth_refresh_tokens (access_token_id);

-- Attempts per login name (known or not, so a lockout tells nothing),
-- counted before the password is checked.
CREATE TABLE auth_login_failures (
    login_key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_ends BIGINT NOT NULL,
    locked_until BIGINT
);

CREATE TABLE auth_password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES auth_users (id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

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
