-- Model registry (SQLite): models, versions, files, uploads, collaborators, stars, quotas.
CREATE TABLE models (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    task        TEXT NOT NULL,
    visibility  TEXT NOT NULL CHECK (visibility IN ('private', 'public')),
    description TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '',
    license     TEXT,
    readme      TEXT NOT NULL DEFAULT '',
    downloads   BIGINT NOT NULL DEFAULT 0,
    calls       BIGINT NOT NULL DEFAULT 0,
    stars       BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX models_public ON models (visibility, updated_at);

CREATE TABLE model_tags (
    model_id  TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    tag       TEXT NOT NULL,
    PRIMARY KEY (model_id, tag)
);
CREATE INDEX model_tags_tag ON model_tags (tag);

-- Full-text search over name and description, kept in step by triggers.
CREATE VIRTUAL TABLE models_fts USING fts5 (model_id UNINDEXED, name, description, tokenize = 'unicode61');
CREATE TRIGGER models_fts_insert AFTER INSERT ON models BEGIN
    INSERT INTO models_fts (model_id, name, description) VALUES (new.id, replace(new.name, '-', ' '), new.description);
END;
CREATE TRIGGER models_fts_update AFTER UPDATE OF name, description ON models BEGIN
    DELETE FROM models_fts WHERE model_id = old.id;
    INSERT INTO models_fts (model_id, name, description) VALUES (new.id, replace(new.name, '-', ' '), new.description);
END;
CREATE TRIGGER models_fts_delete AFTER DELETE ON models BEGIN
    DELETE FROM models_fts WHERE model_id = old.id;
END;

CREATE TABLE model_collaborators (
    model_id   TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access     TEXT NOT NULL CHECK (access IN ('read', 'write')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (model_id, user_id)
);
CREATE INDEX model_collaborators_user ON model_collaborators (user_id);

CREATE TABLE model_stars (
    model_id   TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (model_id, user_id)
);

CREATE TABLE model_versions (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    model_id     TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    version      TEXT NOT NULL,
    format       TEXT NOT NULL CHECK (format IN ('onnx', 'safetensors', 'gguf', 'external')),
    state        TEXT NOT NULL CHECK (state IN ('draft', 'published')),
    metadata     TEXT NOT NULL,
    signature    TEXT,
    created_at   BIGINT NOT NULL,
    published_at BIGINT,
    UNIQUE (model_id, version)
);

CREATE TABLE model_files (
    version_id TEXT NOT NULL REFERENCES model_versions (id) ON DELETE CASCADE,
    tenant_id  TEXT NOT NULL,
    path       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (version_id, path)
);
CREATE INDEX model_files_tenant ON model_files (tenant_id);
CREATE INDEX model_files_sha256 ON model_files (sha256);

CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    version_id TEXT NOT NULL REFERENCES model_versions (id) ON DELETE CASCADE,
    path       TEXT NOT NULL,
    total      BIGINT,
    sha256     TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (version_id, path)
);

CREATE TABLE tenant_quotas (
    tenant_id         TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    max_models        BIGINT,
    max_storage_bytes BIGINT
);
