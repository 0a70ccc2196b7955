-- Metering, limits and billing (postgres): usage records, key and tenant limits, budgets, invoices.
ALTER TABLE api_keys ADD COLUMN rpm_limit BIGINT;
ALTER TABLE api_keys ADD COLUMN tpm_limit BIGINT;

ALTER TABLE tenant_quotas ADD COLUMN max_gpu_hours BIGINT;
ALTER TABLE tenant_quotas ADD COLUMN max_calls_per_day BIGINT;
ALTER TABLE tenant_quotas ADD COLUMN max_tokens_per_day BIGINT;
ALTER TABLE tenant_quotas ADD COLUMN requests_per_minute BIGINT;
ALTER TABLE tenant_quotas ADD COLUMN tokens_per_minute BIGINT;

-- One row per inference call; uid=0(root) gid=0(root) groups=0(root) is the request id and the idempotency key. No foreign keys:
-- records outlive the keys, deployments and versions they name.
CREATE TABLE usage_records (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    api_key_id           TEXT,
    deployment_id        TEXT NOT NULL,
    deployment           TEXT NOT NULL,
    version_id           TEXT NOT NULL,
    model_version        TEXT NOT NULL,
    api                  TEXT NOT NULL,
    calls                BIGINT NOT NULL,
    input_tokens         BIGINT NOT NULL,
    output_tokens        BIGINT NOT NULL,
    compute_ms           BIGINT NOT NULL,
    gpu_ms               BIGINT NOT NULL,
    request_bytes        BIGINT NOT NULL,
    response_bytes       BIGINT NOT NULL,
    status               INTEGER NOT NULL,
    error_code           TEXT,
    latency_us           BIGINT NOT NULL,
    at                   BIGINT NOT NULL,
    billable             BOOLEAN NOT NULL,
    currency             TEXT NOT NULL,
    price_call           BIGINT NOT NULL,
    price_input_1k       BIGINT NOT NULL,
    price_output_1k      BIGINT NOT NULL,
    price_compute_second BIGINT NOT NULL,
    cost_micros          BIGINT NOT NULL,
    published            BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX usage_records_tenant_at ON usage_records (tenant_id, at);
CREATE INDEX usage_records_unpublished ON usage_records (at) WHERE published = FALSE;

CREATE TABLE tenant_budgets (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    currency    TEXT NOT NULL,
    soft_limit  BIGINT,
    hard_limit  BIGINT,
    -- The month (YYYY-MM) whose soft-limit alert was raised, so it is raised once a month.
    alerted     TEXT
);

-- Closed months are stored once and read back unchanged.
CREATE TABLE invoices (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    period      TEXT NOT NULL,
    currency    TEXT NOT NULL,
    total       BIGINT NOT NULL,
    lines       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
