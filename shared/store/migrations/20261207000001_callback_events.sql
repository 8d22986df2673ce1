-- Provider callbacks (docs/API.md "Callbacks", decision 0027): every event
-- a provider reported, raw and parsed, stored before it changes anything.
-- Workers insert them in batches from the callbacks queue and apply them to
-- their messages by rank; `state` follows seed 004:
--   received   stored, not applied yet (its message is not sent yet)
--   processed  applied to its message (or outranked there: nothing to move)
--   ignored    kept but about no message Herald can change (unknown id,
--              another provider's message, a message that failed, an
--              event type that is not about a message), with the reason
--   failed     could not be read (kept with the reason)
CREATE TABLE callback_events (
    id           uuid PRIMARY KEY,
    provider_id  uuid NOT NULL,
    -- The message's tenant once the event is matched to a message.
    tenant_id    uuid,
    message_id   uuid,
    -- Who the event is about (a WeWork member), when the provider names
    -- no message: matched to the latest message sent to them.
    recipient    text,
    event        text NOT NULL CHECK (event IN ('delivered', 'read', 'clicked', 'replied', 'bounced', 'complained')),
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}',
    -- The request as received (a WeWork event decrypted).
    raw          text NOT NULL,
    state        text NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'processed', 'ignored', 'failed')),
    reason       text,
    -- What makes two deliveries of one event the same: a provider's
    -- retries are stored once.
    dedupe_key   bytea NOT NULL,
    processed_at timestamptz
);
CREATE UNIQUE INDEX callback_events_dedupe ON callback_events (provider_id, dedupe_key);
-- A message's events, for GET /v1/messages/{id}.
CREATE INDEX callback_events_message ON callback_events (message_id, occurred_at) WHERE message_id IS NOT NULL;
-- Events still waiting for their message to be sent (small: swept every second).
CREATE INDEX callback_events_waiting ON callback_events (received_at) WHERE state = 'received';

-- A WeWork member's reply names no message: it is matched to the latest
-- message that provider sent to the member. Only WeWork rows are indexed.
CREATE INDEX messages_wework_members ON messages USING gin (string_to_array(recipient, '|'))
    WHERE channel = 'wework';
