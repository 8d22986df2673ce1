-- Keys Herald makes for itself and every service shares: `links` signs the
-- unsubscribe links in emails (made by workers, checked by producers).
CREATE TABLE herald_secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
