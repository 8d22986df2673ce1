-- Tenant webhooks (issue 17 part 8, decision 0028): the status events of a
-- tenant's messages are written here in the same transaction as the status
-- change (an outbox), and workers post them to the tenant's webhook_url,
-- signed, retrying with backoff for 24 hours.

-- The events a tenant's webhook receives; NULL is every event.
ALTER TABLE tenants ADD COLUMN webhook_events text[];

-- Ids that sort by creation time (UUID version 7: 48 bits of Unix
-- milliseconds, then random bits), so a delivery log pages by id.
CREATE FUNCTION herald_uuid_v7() RETURNS uuid AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$ LANGUAGE sql VOLATILE;

-- A tenant's signing secret, and the one it replaced, which signs beside
-- it until `previous_until` (rotation with an overlap). Shown to the
-- tenant once, when made.
CREATE TABLE webhook_secrets (
    tenant_id      uuid PRIMARY KEY REFERENCES tenants (id),
    secret         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    previous       text,
    previous_until timestamptz
);

CREATE TABLE webhook_deliveries (
    -- The event's id, the same in every attempt (receivers dedupe by it).
    id              uuid PRIMARY KEY DEFAULT herald_uuid_v7(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    message_id      uuid NOT NULL,
    event           text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- When the next attempt is due; while one is under way, the end of its
    -- lease (a worker that dies mid-attempt leaves it due again then).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- No attempt starts after this: the delivery is `failed`.
    give_up_at      timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    last_attempt_at timestamptz,
    -- The HTTP status of the last attempt, if it got one.
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- The dispatcher's claim: due deliveries, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
-- The tenant's delivery log, newest first.
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, id DESC);
CREATE INDEX webhook_deliveries_message ON webhook_deliveries (message_id);

-- Open and click tracking of a tenant's HTML email (issue 17 part 6): off
-- unless the tenant opts in.
ALTER TABLE tenants ADD COLUMN track_opens boolean NOT NULL DEFAULT false,
                    ADD COLUMN track_clicks boolean NOT NULL DEFAULT false;
