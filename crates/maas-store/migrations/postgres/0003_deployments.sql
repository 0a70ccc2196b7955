-- Deployments (PostgreSQL): a model version served as an endpoint `{tenant}/{name}`.
CREATE TABLE deployments (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    model_id    TEXT NOT NULL REFERENCES models (id) ON DELETE RESTRICT,
    version_id  TEXT NOT NULL REFERENCES model_versions (id) ON DELETE RESTRICT,
    replicas    BIGINT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
