-- Tenant templates (docs/API.md, decision 0026). `templates` holds one row
-- per template with its current version (and that version's channel);
-- `template_versions` every version ever written, never changed or deleted,
-- so a message queued with version N renders N even after later versions or
-- a delete.
CREATE TABLE templates (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    name       text NOT NULL,
    channel    text NOT NULL CHECK (channel IN ('email', 'wework', 'webhook')),
    version    integer NOT NULL CHECK (version >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE UNIQUE INDEX templates_name ON templates (tenant_id, name) WHERE deleted_at IS NULL;
CREATE INDEX templates_tenant ON templates (tenant_id, id) WHERE deleted_at IS NULL;

CREATE TABLE template_versions (
    template_id uuid NOT NULL REFERENCES templates (id),
    version     integer NOT NULL CHECK (version >= 1),
    channel     text NOT NULL CHECK (channel IN ('email', 'wework', 'webhook')),
    -- {subject, text, html, markdown, textcard}: the sources of this version.
    parts       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);
