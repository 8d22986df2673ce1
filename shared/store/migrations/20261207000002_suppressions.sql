-- Per-tenant suppression list (issue 17 part 7): an email address that hard
-- bounced, complained, or was added by the tenant is never sent to again by
-- that tenant. A send to it is accepted and recorded `suppressed` (so a
-- batch is not refused for one address), and no job is published.
CREATE TABLE suppressions (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    -- Lower-cased email address.
    address    text NOT NULL,
    reason     text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual')),
    -- The message whose bounce or complaint put it here, if any.
    message_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, address)
);
-- Listing a tenant's entries newest first.
CREATE INDEX suppressions_tenant_created ON suppressions (tenant_id, created_at DESC, address);
