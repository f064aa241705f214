-- Characters of message content a conversation holds: capped, so one
-- conversation always fits what the component reads into memory (a
-- prompt, an export line, a shared snapshot).
ALTER TABLE conv_conversations ADD COLUMN content_size BIGINT NOT NULL DEFAULT 0;
