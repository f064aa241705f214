-- Knowledge: collections of a user's documents, the documents (their
-- originals are blobs in the `default` bucket, key
-- `knowledge/{user}/{collection}/{id}`), the chunks their text
-- was split into (searched by a generated tsvector (GIN) here and by the host's `default`
-- vector index, whose item ids are the chunks' ids), and the collections a
-- conversation answers from. Every row carries its owner's `user_id`.

CREATE TABLE conv_collections (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    -- set for a conversation's own collection (uploads straight into it)
    conversation_id TEXT UNIQUE REFERENCES conv_conversations (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conv_collections_user ON conv_collections (user_id, created_at);

CREATE TABLE conv_documents (
    id TEXT PRIMARY KEY,
    collection_id TEXT NOT NULL REFERENCES conv_collections (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    -- what the bytes are (sniffed), not what the client said
    format TEXT NOT NULL CHECK (format IN ('pdf', 'docx', 'markdown', 'text', 'html', 'csv')),
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    error TEXT,
    -- bumped by every (re)processing request: a job for an older one stops
    generation BIGINT NOT NULL DEFAULT 1,
    pages BIGINT,
    characters BIGINT NOT NULL DEFAULT 0,
    chunk_count BIGINT NOT NULL DEFAULT 0,
    processing_ms BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conv_documents_collection ON conv_documents (collection_id, created_at);
CREATE INDEX conv_documents_user ON conv_documents (user_id);

CREATE TABLE conv_chunks (
    num BIGSERIAL PRIMARY KEY,
    -- `{document}:{generation}:{index}`, the vector's id too
    id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES conv_documents (id) ON DELETE CASCADE,
    collection_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    content TEXT NOT NULL,
    -- character offsets into the document's extracted text
    start_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    page BIGINT,
    heading TEXT,
    tokens BIGINT NOT NULL,
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED
);
CREATE INDEX conv_chunks_document ON conv_chunks (document_id, idx);
CREATE INDEX conv_chunks_user ON conv_chunks (user_id, collection_id);
CREATE INDEX conv_chunks_search ON conv_chunks USING GIN (search);

-- The user's collections a conversation answers from (its own is implied).
CREATE TABLE conv_conversation_collections (
    conversation_id TEXT NOT NULL REFERENCES conv_conversations (id) ON DELETE CASCADE,
    collection_id TEXT NOT NULL REFERENCES conv_collections (id) ON DELETE CASCADE,
    PRIMARY KEY (conversation_id, collection_id)
);
CREATE INDEX conv_conversation_collections_collection ON conv_conversation_collections (collection_id);

-- Retrieval settings per conversation (NULL: the service's defaults).
ALTER TABLE conv_conversations ADD COLUMN rag_top_k BIGINT;
ALTER TABLE conv_conversations ADD COLUMN rag_min_score DOUBLE PRECISION;
-- The sources an answer was given, as JSON (NULL: none).
ALTER TABLE conv_messages ADD COLUMN sources TEXT;
