-- commerce: the currency a platform's shop sells in, for payloads that do not
-- name it (WooCommerce's product JSON).
ALTER TABLE commerce.platforms ADD COLUMN currency text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$');
