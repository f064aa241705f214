-- What the auth service's sweep (components/auth/src/sweep.rs) looks up:
-- rows past their use, found without scanning the live ones.
CREATE INDEX auth_refresh_tokens_expires ON auth_refresh_tokens (expires_at);
CREATE INDEX auth_sessions_last_used ON auth_sessions (last_used_at);
CREATE INDEX auth_password_resets_expires ON auth_password_resets (expires_at);
CREATE INDEX auth_login_failures_window ON auth_login_failures (window_ends);
