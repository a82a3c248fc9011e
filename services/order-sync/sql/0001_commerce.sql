-- commerce: platforms, customers, orders and their history, webhook receipts.
CREATE SCHEMA IF NOT EXISTS commerce;

CREATE TABLE commerce.platforms (
    name    text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,64}$'),
    dialect text NOT NULL DEFAULT 'standard' CHECK (dialect IN ('standard', 'shopify')),
    secret  text NOT NULL                      -- "whsec_<base64>" (Standard Webhooks)
);

CREATE TABLE commerce.customers (
    id          bigserial PRIMARY KEY,
    platform    text NOT NULL REFERENCES commerce.platforms (name),
    external_id text NOT NULL,
    name        text NOT NULL DEFAULT '',
    phone       text NOT NULL DEFAULT '',
    email       text NOT NULL DEFAULT '',
    UNIQUE (platform, external_id)
);
CREATE INDEX customers_phone ON commerce.customers (phone);

CREATE TABLE commerce.orders (
    order_number text PRIMARY KEY CHECK (length(order_number) BETWEEN 1 AND 64),
    platform     text NOT NULL REFERENCES commerce.platforms (name),
    customer_id  bigint REFERENCES commerce.customers (id),
    status       text NOT NULL CHECK (status IN ('ordered', 'reviewed', 'shipped', 'delivered', 'settled',
                                                 'returned', 'exchanged', 'cancelled')),
    total_minor  bigint NOT NULL CHECK (total_minor >= 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    version      bigint NOT NULL,                 -- the platform's, for out-of-order updates
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE commerce.order_items (
    order_number text NOT NULL REFERENCES commerce.orders (order_number) ON DELETE CASCADE,
    line         integer NOT NULL,
    sku          text NOT NULL,
    name         text NOT NULL DEFAULT '',
    quantity     integer NOT NULL CHECK (quantity BETWEEN 1 AND 100000),
    unit_minor   bigint NOT NULL CHECK (unit_minor >= 0),
    PRIMARY KEY (order_number, line)
);

-- Every status change: who, when, from where.
CREATE TABLE commerce.order_audit (
    id           bigserial PRIMARY KEY,
    order_number text NOT NULL,
    from_status  text,
    to_status    text NOT NULL,
    by_whom      text NOT NULL,
    source       text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);

-- Webhooks received, by the platform's event id: each is applied once.
CREATE TABLE commerce.webhook_events (
    platform    text NOT NULL,
    event_id    text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, event_id)
);

-- The order status machine: which changes are allowed.
CREATE TABLE commerce.status_transitions (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO commerce.status_transitions VALUES
    ('ordered', 'reviewed'), ('ordered', 'cancelled'),
    ('reviewed', 'shipped'), ('reviewed', 'cancelled'),
    ('shipped', 'delivered'), ('shipped', 'returned'),
    ('delivered', 'settled'), ('delivered', 'returned'), ('delivered', 'exchanged'),
    ('settled', 'returned'), ('settled', 'exchanged'),
    ('returned', 'settled'), ('exchanged', 'settled');
