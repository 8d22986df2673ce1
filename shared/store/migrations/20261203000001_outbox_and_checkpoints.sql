-- The producer's outbox: the job of every message it accepted, until the
-- broker confirmed it (docs/decisions/0016). Inserted in the transaction
-- that inserts the records, deleted (batched) after the confirm; a row
-- older than the reconciler's interval belongs to a producer that died or
-- lost the broker between the two, and the leader republishes it.
CREATE TABLE unconfirmed_jobs (
    message_id uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    channel    text NOT NULL,
    priority   smallint NOT NULL,
    envelope   bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- No index on created_at: the table holds only the jobs in flight (a few
-- thousand at most), which the leader's reconciler scans once a second; an
-- index would cost every send an insert and a delete.

-- The last checkpoint of every provider's hour and day windows, one row per
-- bucket with units in it, written by the leader every few seconds and
-- read when Redis lost its keys (docs/decisions/0017).
CREATE TABLE capacity_checkpoints (
    provider_id uuid NOT NULL,
    window_ms   bigint NOT NULL,
    bucket      bigint NOT NULL,
    used        bigint NOT NULL,
    saved_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_id, window_ms, bucket)
);
