-- The explore service's database: the model catalogue (curation only:
-- what is installed is read live from the host's model store), its tags,
-- and the record of installs started through it. Only the explore
-- component is granted it. Times are milliseconds since the Unix epoch.

CREATE TABLE explore_models (
    -- `name:tag`, as the model store names it
    name TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    author TEXT,
    version TEXT,
    license TEXT,
    template TEXT,
    model_file TEXT,
    reference_link TEXT,
    image_url TEXT,
    -- where an install fetches the GGUF from, and its SHA-256 (hex)
    source_url TEXT,
    sha256 TEXT,
    digest TEXT,
    format TEXT,
    parameter_size TEXT,
    quantization_level TEXT,
    parent_model TEXT,
    family TEXT,
    -- JSON arrays of strings
    families TEXT NOT NULL DEFAULT '[]',
    languages TEXT NOT NULL DEFAULT '[]',
    capabilities TEXT NOT NULL DEFAULT '[]',
    architecture TEXT,
    file_type BIGINT,
    parameter_count BIGINT,
    quantization_version BIGINT,
    size_label TEXT,
    model_type TEXT,
    -- bytes of the GGUF file
    size BIGINT,
    context_length BIGINT,
    -- JSON object: recommended Ollama options
    options TEXT NOT NULL DEFAULT '{}',
    released_at BIGINT,
    -- generations counted from `usage.recorded`
    uses BIGINT NOT NULL DEFAULT 0,
    -- the tag names, space-separated, for full-text search
    search_tags TEXT NOT NULL DEFAULT '',
    -- little-endian f32s of the description's embedding, and the model
    -- that made them (NULL: to be computed)
    embedding BYTEA,
    embedding_model TEXT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE explore_tags (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- lower-case name: names differing only in case are one tag
    name_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE explore_model_tags (
    model TEXT NOT NULL REFERENCES explore_models (name) ON DELETE CASCADE,
    tag_id TEXT NOT NULL REFERENCES explore_tags (id) ON DELETE CASCADE,
    PRIMARY KEY (model, tag_id)
);
CREATE INDEX explore_model_tags_tag ON explore_model_tags (tag_id);

-- Ranked full-text search: the name and title weigh most, then tags and
-- family, then the description.
ALTER TABLE explore_models ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', translate(name, ':-_./', '     ') || ' ' || title), 'A')
    || setweight(to_tsvector('simple', search_tags || ' ' || coalesce(family, '')), 'B')
    || setweight(to_tsvector('simple', description), 'C')
) STORED;
CREATE INDEX explore_models_search ON explore_models USING GIN (search);

-- Installs started through /api/admin/models/{name}/install: their outcome
-- outlives the host's memory of finished pulls.
CREATE TABLE explore_installs (
    -- the host's pull id
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT,
    -- queued | downloading | verifying | done | failed | cancelled
    state TEXT NOT NULL,
    completed BIGINT NOT NULL DEFAULT 0,
    total BIGINT,
    error TEXT,
    requested_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX explore_installs_started ON explore_installs (started_at);
