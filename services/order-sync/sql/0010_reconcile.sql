-- commerce: reconciliation with a platform's list endpoint (reconcile_url,
-- added by 0003): the credential it takes, and where the last pass began
-- (epoch seconds; the next pass asks for what changed since, minus an overlap).
ALTER TABLE commerce.platforms
    ADD COLUMN reconcile_token text CHECK (length(reconcile_token) <= 512),
    ADD COLUMN reconcile_since bigint NOT NULL DEFAULT 0;
