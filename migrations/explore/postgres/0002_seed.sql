-- The default models `cargo xtask up` installs, in the catalogue of a
-- fresh install. Administrators edit or delete them like any entry.

INSERT INTO explore_tags (id, name, name_key, created_at) VALUES
    ('7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0001', 'chat', 'chat', 1764460800000),
    ('7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0002', 'completion', 'completion', 1764460800000),
    ('7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0003', 'embedding', 'embedding', 1764460800000),
    ('7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0004', 'small', 'small', 1764460800000),
    ('7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0005', 'instruct', 'instruct', 1764460800000),
    ('7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0006', 'base', 'base', 1764460800000),
    ('7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0007', 'rag', 'rag', 1764460800000);

INSERT INTO explore_models (
    name, title, description, author, license, reference_link, sha256,
    family, parameter_size, quantization_level, parameter_count, context_length,
    capabilities, languages, format, model_type, options, search_tags,
    created_at, updated_at
) VALUES (
    'gemma3:270m', 'Gemma 3 270M',
    'A compact 270-million-parameter base model from Google DeepMind''s Gemma 3 family, pretrained but not instruction-tuned: it continues text rather than following instructions. Good for text completion, fine-tuning and experiments on modest hardware. 4-bit K-quantized (Q4_K_M) GGUF with a 32k-token context.',
    'Google DeepMind', 'Gemma Terms of Use (https://ai.google.dev/gemma/terms)',
    'https://huggingface.co/google/gemma-3-270m',
    'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818',
    'gemma3', '270M', 'Q4_K_M', NULL, 32768,
    '["completion"]', '["en"]', 'gguf', 'base', '{"temperature":1.0,"top_k":64,"top_p":0.95}',
    'completion small base', 1764460800000, 1764460800000
), (
    'smollm2:135m', 'SmolLM2 135M Instruct',
    'Hugging Face''s SmolLM2-135M-Instruct: a 135-million-parameter instruction-tuned chat model, small enough to answer on a laptop CPU. Handles short questions, rewriting and summaries in English; Lamina''s default model for conversations. 4-bit (Q4_1) GGUF with an 8k-token context.',
    'Hugging Face (HuggingFaceTB)', 'Apache-2.0',
    'https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct',
    'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
    'llama', '135M', 'Q4_1', NULL, 8192,
    '["completion","chat"]', '["en"]', 'gguf', 'instruct', '{"temperature":0.2,"top_p":0.9}',
    'chat completion small instruct', 1764460800000, 1764460800000
), (
    'all-minilm:l6-v2', 'all-MiniLM-L6-v2',
    'The sentence-transformers embedding model all-MiniLM-L6-v2: 22 million parameters mapping sentences and short paragraphs to 384-dimensional vectors, for semantic search, clustering and retrieval-augmented generation. Lamina uses it for semantic search of this catalogue and for documents. Full-precision (F32) GGUF; inputs up to 512 tokens.',
    'sentence-transformers', 'Apache-2.0',
    'https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2',
    NULL,
    'bert', '22M', 'F32', NULL, 512,
    '["embedding"]', '["en"]', 'gguf', 'embedding', '{}',
    'embedding small rag', 1764460800000, 1764460800000
);

INSERT INTO explore_model_tags (model, tag_id) VALUES
    ('gemma3:270m', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0002'),
    ('gemma3:270m', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0004'),
    ('gemma3:270m', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0006'),
    ('smollm2:135m', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0001'),
    ('smollm2:135m', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0002'),
    ('smollm2:135m', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0004'),
    ('smollm2:135m', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0005'),
    ('all-minilm:l6-v2', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0003'),
    ('all-minilm:l6-v2', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0004'),
    ('all-minilm:l6-v2', '7f1c2a40-5b1e-4c1a-9d1e-0a6f3b2c0007');
