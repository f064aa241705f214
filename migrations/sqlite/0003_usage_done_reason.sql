-- How each recorded generation ended (`stop`, `length`, `cancelled` when
-- the client hung up part-way); NULL for embeddings and older rows.
ALTER TABLE outbox_usage ADD COLUMN done_reason TEXT;
