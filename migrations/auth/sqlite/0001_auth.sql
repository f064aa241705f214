-- The auth service's database: accounts, sessions, password resets and
-- email confirmations. Only the auth component is granted it. Times are
-- seconds since the Unix epoch.
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
    -- when the current address was confirmed (components/auth/src/confirmations.rs)
    email_confirmed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

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

-- Attempts per login name (known or not, so a delay tells nothing), per
-- current-password check and per client address, counted before the
-- password is checked (components/auth/src/lockout.rs).
CREATE TABLE auth_login_failures (
    login_key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_ends BIGINT NOT NULL,
    -- the current delay's end
    locked_until BIGINT,
    -- delays in a row: the next one is twice as long
    locks BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE auth_password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES auth_users (id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- Single-use email confirmation links.
CREATE TABLE auth_email_confirmations (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES auth_users (id),
    -- the address the link was sent to: it confirms only that one
    email TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX auth_email_confirmations_user ON auth_email_confirmations (user_id);
CREATE INDEX auth_email_confirmations_expires ON auth_email_confirmations (expires_at);

-- What the auth service's sweep (components/auth/src/sweep.rs) looks up:
-- rows past their use, found without scanning the live ones.
CREATE INDEX auth_refresh_tokens_expires ON auth_refresh_tokens (expires_at);
CREATE INDEX auth_sessions_last_used ON auth_sessions (last_used_at);
CREATE INDEX auth_password_resets_expires ON auth_password_resets (expires_at);
CREATE INDEX auth_login_failures_window ON auth_login_failures (window_ends);
