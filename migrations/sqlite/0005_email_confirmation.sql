-- Email confirmation (components/auth/src/confirmations.rs): when the
-- current address was confirmed, and the single-use links sent for it.
ALTER TABLE auth_users ADD COLUMN email_confirmed_at BIGINT;

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

-- Administrators from before confirmation existed keep access when
-- `require_confirmed_email` is turned on (the operator chose their
-- addresses); other existing accounts confirm through a new link.
UPDATE auth_users SET email_confirmed_at = updated_at WHERE roles LIKE '%Admin%';
