-- Roles an administrator can give accounts (an account's own roles stay
-- in auth_users.roles, comma-separated, as its credentials carry them).
-- User and Admin are built in: they cannot be deleted.
CREATE TABLE auth_roles (
    name TEXT PRIMARY KEY,
    -- lower-case name: names differing only in case are one role
    name_key TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    builtin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

INSERT INTO auth_roles (name, name_key, description, builtin, created_at) VALUES
    ('User', 'user', 'Every account: its own conversations, keys and usage', TRUE, 0),
    ('Admin', 'admin', 'Administers accounts, roles, models and the catalogue', TRUE, 0);
