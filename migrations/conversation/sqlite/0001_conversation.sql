-- The conversation service's database: folders, conversations as message
-- trees, tags, notes, feedback and shares. Only the conversation component
-- is granted it. Times are milliseconds since the Unix epoch. Every row
-- carries its owner's `user_id`, which every statement filters on.

-- A tree per user; the root has no parent.
CREATE TABLE conv_folders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    parent_id TEXT REFERENCES conv_folders (id),
    name TEXT NOT NULL,
    -- lower-case name: names differing only in case are one name
    name_key TEXT NOT NULL,
    -- defaults for new conversations in the folder
    model TEXT,
    system_prompt TEXT,
    options TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX conv_folders_root ON conv_folders (user_id) WHERE parent_id IS NULL;
CREATE UNIQUE INDEX conv_folders_name ON conv_folders (parent_id, name_key);
CREATE INDEX conv_folders_user ON conv_folders (user_id);

-- `num` is the full-text index's stable row number (a rowid VACUUM keeps).
CREATE TABLE conv_conversations (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    folder_id TEXT NOT NULL REFERENCES conv_folders (id),
    title TEXT NOT NULL,
    -- a title the user set is never replaced by a generated one
    title_by_user BOOLEAN NOT NULL DEFAULT FALSE,
    model TEXT NOT NULL,
    system_prompt TEXT,
    -- JSON object (Ollama's option names)
    options TEXT,
    pinned BOOLEAN NOT NULL DEFAULT FALSE,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    -- the active leaf of the message tree
    current_message_id TEXT,
    message_count BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conv_conversations_user ON conv_conversations (user_id, updated_at);
CREATE INDEX conv_conversations_folder ON conv_conversations (folder_id);

-- Messages never change once stored; a new branch is a new child.
CREATE TABLE conv_messages (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conv_conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    parent_id TEXT REFERENCES conv_messages (id) ON DELETE CASCADE,
    -- order of creation within the conversation (siblings are listed by it)
    seq BIGINT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    -- what produced it
    model TEXT,
    options TEXT,
    -- tokens of the content by the model's tokenizer (prompt truncation)
    tokens BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    load_duration_ns BIGINT,
    prompt_duration_ns BIGINT,
    eval_duration_ns BIGINT,
    total_duration_ns BIGINT,
    done_reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX conv_messages_parent ON conv_messages (conversation_id, parent_id);
CREATE INDEX conv_messages_user ON conv_messages (user_id);

-- Tags: a tag exists while a conversation carries it.
CREATE TABLE conv_tags (
    conversation_id TEXT NOT NULL REFERENCES conv_conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (conversation_id, tag)
);
CREATE INDEX conv_tags_user ON conv_tags (user_id, tag);

-- A note on a range of a message's text, in UTF-16 code units.
CREATE TABLE conv_notes (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES conv_messages (id) ON DELETE CASCADE,
    conversation_id TEXT NOT NULL REFERENCES conv_conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    from_index BIGINT NOT NULL,
    to_index BIGINT NOT NULL,
    content TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conv_notes_conversation ON conv_notes (conversation_id, message_id);

-- One rating per user per assistant message.
CREATE TABLE conv_feedback (
    message_id TEXT NOT NULL REFERENCES conv_messages (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conv_conversations (id) ON DELETE CASCADE,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT,
    -- JSON array of strings
    tags TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX conv_feedback_conversation ON conv_feedback (conversation_id);

-- A read-only snapshot anyone with the (unguessable) id may read.
CREATE TABLE conv_shares (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL UNIQUE REFERENCES conv_conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Full-text search (FTS5, external content: the text stays in the tables
-- above; triggers keep the indexes in step).
CREATE VIRTUAL TABLE conv_messages_fts USING fts5 (
    content, content = 'conv_messages', content_rowid = 'num',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER conv_messages_fts_insert AFTER INSERT ON conv_messages BEGIN
    INSERT INTO conv_messages_fts (rowid, content) VALUES (new.num, new.content);
END;
CREATE TRIGGER conv_messages_fts_delete AFTER DELETE ON conv_messages BEGIN
    INSERT INTO conv_messages_fts (conv_messages_fts, rowid, content)
    VALUES ('delete', old.num, old.content);
END;

CREATE VIRTUAL TABLE conv_titles_fts USING fts5 (
    title, content = 'conv_conversations', content_rowid = 'num',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER conv_titles_fts_insert AFTER INSERT ON conv_conversations BEGIN
    INSERT INTO conv_titles_fts (rowid, title) VALUES (new.num, new.title);
END;
CREATE TRIGGER conv_titles_fts_delete AFTER DELETE ON conv_conversations BEGIN
    INSERT INTO conv_titles_fts (conv_titles_fts, rowid, title) VALUES ('delete', old.num, old.title);
END;
CREATE TRIGGER conv_titles_fts_update AFTER UPDATE OF title ON conv_conversations BEGIN
    INSERT INTO conv_titles_fts (conv_titles_fts, rowid, title) VALUES ('delete', old.num, old.title);
    INSERT INTO conv_titles_fts (rowid, title) VALUES (new.num, new.title);
END;
