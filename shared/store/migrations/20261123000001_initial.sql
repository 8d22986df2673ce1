-- Herald's initial schema: tenants and their keys, providers, message
-- records, and jobs parked until their time (scheduled sends).

CREATE TABLE tenants (
    id                 uuid PRIMARY KEY,
    code               text NOT NULL UNIQUE,
    name               text NOT NULL,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    weight             integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
    daily_quota        bigint CHECK (daily_quota > 0),
    rate_limit_per_sec integer CHECK (rate_limit_per_sec > 0),
    webhook_url        text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    -- SHA-256 of the key; the key itself is shown once and never stored.
    key_hash   bytea NOT NULL UNIQUE,
    prefix     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE providers (
    id          uuid PRIMARY KEY,
    -- NULL: in the shared pool; otherwise serves only this tenant.
    tenant_id   uuid REFERENCES tenants (id),
    name        text NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('email', 'wework', 'webhook')),
    kind        text NOT NULL CHECK (kind IN ('smtp', 'wework', 'webhook')),
    config      jsonb NOT NULL,
    quota       jsonb NOT NULL DEFAULT '{}',
    send_window jsonb,
    weight      integer NOT NULL DEFAULT 100 CHECK (weight BETWEEN 1 AND 10000),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX providers_name ON providers (name) WHERE deleted_at IS NULL;

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    channel         text NOT NULL,
    recipient       text NOT NULL,
    status          text NOT NULL,
    provider_id     uuid,
    attempts        integer NOT NULL DEFAULT 0,
    priority        smallint NOT NULL,
    batch_id        uuid,
    idempotency_key text,
    error_code      text,
    error_message   text,
    metadata        jsonb NOT NULL DEFAULT '{}',
    scheduled_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    delivered_at    timestamptz
);
-- Listing a tenant's messages newest first (ids are UUIDv7, so they sort by time).
CREATE INDEX messages_tenant_id ON messages (tenant_id, id DESC);
CREATE INDEX messages_tenant_status ON messages (tenant_id, status, id DESC);
CREATE INDEX messages_batch ON messages (batch_id) WHERE batch_id IS NOT NULL;
-- The reconciler looks for rows left queued (a producer that died between insert and publish).
CREATE INDEX messages_queued ON messages (created_at) WHERE status = 'queued';

-- Idempotency keys live 24 h: a repeated key returns the first response.
CREATE TABLE idempotency_keys (
    tenant_id    uuid NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    message_id   uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Jobs waiting for their time: scheduled sends (and, later, long waits for
-- a send window). Released by the scheduler with FOR UPDATE SKIP LOCKED.
CREATE TABLE parked_jobs (
    message_id uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    channel    text NOT NULL,
    due_at     timestamptz NOT NULL,
    envelope   bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_jobs_due ON parked_jobs (due_at);
