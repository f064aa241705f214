-- The audit log's own fields: who (actor), what (action), to what
-- (target), how it ended (outcome), in which request and from where.
-- Rows written before keep their event as the action, their user as the
-- actor, and what their detail held.
ALTER TABLE outbox_audit ADD COLUMN action TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox_audit ADD COLUMN actor TEXT;
ALTER TABLE outbox_audit ADD COLUMN target TEXT;
ALTER TABLE outbox_audit ADD COLUMN outcome TEXT NOT NULL DEFAULT 'success';
ALTER TABLE outbox_audit ADD COLUMN request_id TEXT;
ALTER TABLE outbox_audit ADD COLUMN client TEXT;

UPDATE outbox_audit SET
    action = event,
    actor = user_id,
    target = detail::jsonb -> 'detail' ->> 'target',
    outcome = CASE WHEN event IN ('login.failed', 'lockout') THEN 'failure' ELSE 'success' END,
    client = detail::jsonb ->> 'client',
    detail = coalesce((detail::jsonb -> 'detail')::text, '{}');

CREATE INDEX outbox_audit_actor ON outbox_audit (actor, at);
CREATE INDEX outbox_audit_action ON outbox_audit (action, at);
CREATE INDEX outbox_audit_target ON outbox_audit (target, at);

-- Usage by the kind of credential that spent it (`api-key` or `session`),
-- so it can be grouped per API key; NULL before.
ALTER TABLE outbox_usage ADD COLUMN credential_type TEXT;
CREATE INDEX outbox_usage_at ON outbox_usage (at);
