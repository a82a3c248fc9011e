-- commerce: the whole data model around orders: customers in full, points,
-- products, warehouses and stock, payments, shipments, returns, subscriptions.
-- Amounts are integers in minor units of their currency; every row a platform
-- sends carries the platform's version so late updates can be told apart.

-- Platforms may speak the WooCommerce dialect too.
ALTER TABLE commerce.platforms DROP CONSTRAINT platforms_dialect_check;
ALTER TABLE commerce.platforms ADD CONSTRAINT platforms_dialect_check
    CHECK (dialect IN ('standard', 'shopify', 'woocommerce'));
-- Where pushes to this platform go (Standard Webhooks signed); NULL: none.
ALTER TABLE commerce.platforms ADD COLUMN endpoint text CHECK (length(endpoint) <= 2000);

-- Customers: the profile. phone stays the main number; more in customer_phones.
ALTER TABLE commerce.customers
    ADD COLUMN category      text NOT NULL DEFAULT 'regular' CHECK (category ~ '^[a-z0-9_-]{1,32}$'),
    ADD COLUMN birthday      date,
    ADD COLUMN gender        text NOT NULL DEFAULT '' CHECK (gender IN ('', 'female', 'male', 'other')),
    ADD COLUMN language      text NOT NULL DEFAULT '' CHECK (length(language) <= 16),
    ADD COLUMN note          text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    ADD COLUMN custom_fields jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(custom_fields) = 'object'),
    ADD COLUMN version       bigint NOT NULL DEFAULT 0,
    ADD COLUMN created_at    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_at    timestamptz NOT NULL DEFAULT now();
ALTER TABLE commerce.customers ADD CONSTRAINT customers_lengths
    CHECK (length(name) <= 200 AND length(phone) <= 32 AND length(email) <= 200 AND length(external_id) <= 64);
CREATE INDEX customers_email ON commerce.customers (lower(email)) WHERE email <> '';

-- Every number a customer can call from or be called on (the main one too).
CREATE TABLE commerce.customer_phones (
    customer_id bigint NOT NULL REFERENCES commerce.customers (id) ON DELETE CASCADE,
    phone       text NOT NULL CHECK (length(phone) BETWEEN 1 AND 32),
    kind        text NOT NULL DEFAULT 'mobile' CHECK (kind IN ('mobile', 'home', 'work', 'other')),
    PRIMARY KEY (customer_id, phone)
);
CREATE INDEX customer_phones_phone ON commerce.customer_phones (phone);

-- A customer's shipping and billing addresses.
CREATE TABLE commerce.customer_addresses (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES commerce.customers (id) ON DELETE CASCADE,
    kind        text NOT NULL DEFAULT 'shipping' CHECK (kind IN ('shipping', 'billing')),
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    phone       text NOT NULL DEFAULT '' CHECK (length(phone) <= 32),
    line1       text NOT NULL DEFAULT '' CHECK (length(line1) <= 300),
    line2       text NOT NULL DEFAULT '' CHECK (length(line2) <= 300),
    city        text NOT NULL DEFAULT '' CHECK (length(city) <= 100),
    province    text NOT NULL DEFAULT '' CHECK (length(province) <= 100),
    postal_code text NOT NULL DEFAULT '' CHECK (length(postal_code) <= 20),
    country     text NOT NULL DEFAULT '' CHECK (country ~ '^([A-Z]{2})?$'),
    is_default  boolean NOT NULL DEFAULT false
);
CREATE INDEX customer_addresses_customer ON commerce.customer_addresses (customer_id);
CREATE UNIQUE INDEX customer_addresses_one_default ON commerce.customer_addresses (customer_id, kind) WHERE is_default;

-- Loyalty points: every earning and spending; the balance is the sum.
-- ref makes a grant idempotent (e.g. "order:1001", "refund:1001").
CREATE TABLE commerce.points_ledger (
    id           bigserial PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES commerce.customers (id),
    delta        bigint NOT NULL CHECK (delta <> 0 AND abs(delta) <= 100000000),
    reason       text NOT NULL CHECK (reason IN ('purchase', 'refund', 'redeem', 'adjust', 'expire', 'bonus')),
    ref          text CHECK (length(ref) <= 128),
    order_number text REFERENCES commerce.orders (order_number),
    by_whom      text NOT NULL DEFAULT '' CHECK (length(by_whom) <= 64),
    at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, ref)
);
CREATE INDEX points_ledger_customer ON commerce.points_ledger (customer_id);

-- Products by code (the SKU order items name). specification: size, colour...
CREATE TABLE commerce.products (
    code          text PRIMARY KEY CHECK (length(code) BETWEEN 1 AND 64),
    platform      text REFERENCES commerce.platforms (name),
    external_id   text CHECK (length(external_id) <= 64),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    category      text NOT NULL DEFAULT '' CHECK (length(category) <= 100),
    price_minor   bigint NOT NULL CHECK (price_minor BETWEEN 0 AND 1000000000000),
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    specification jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(specification) = 'object'),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draft', 'discontinued')),
    version       bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_category ON commerce.products (category, created_at);

-- Places stock is kept.
CREATE TABLE commerce.warehouses (
    code    text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_-]{1,32}$'),
    name    text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    address text NOT NULL DEFAULT '' CHECK (length(address) <= 500),
    active  boolean NOT NULL DEFAULT true
);

-- Stock of a product in a warehouse: what is there, and how much of it orders
-- have reserved (released or decremented on shipment). Available = on_hand - reserved.
CREATE TABLE commerce.stock (
    product_code   text NOT NULL REFERENCES commerce.products (code),
    warehouse_code text NOT NULL REFERENCES commerce.warehouses (code),
    on_hand        integer NOT NULL DEFAULT 0 CHECK (on_hand BETWEEN 0 AND 1000000000),
    reserved       integer NOT NULL DEFAULT 0 CHECK (reserved BETWEEN 0 AND 1000000000),
    version        bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_code, warehouse_code)
);
CREATE INDEX stock_warehouse ON commerce.stock (warehouse_code);

-- Every change of stock: goods in, goods out, moved between warehouses, counted.
CREATE TABLE commerce.stock_movements (
    id             bigserial PRIMARY KEY,
    product_code   text NOT NULL REFERENCES commerce.products (code),
    kind           text NOT NULL CHECK (kind IN ('in', 'out', 'transfer', 'adjust')),
    from_warehouse text REFERENCES commerce.warehouses (code),
    to_warehouse   text REFERENCES commerce.warehouses (code),
    quantity       integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000000000),
    reason         text NOT NULL DEFAULT '' CHECK (length(reason) <= 200),
    order_number   text REFERENCES commerce.orders (order_number),
    by_whom        text NOT NULL DEFAULT '' CHECK (length(by_whom) <= 64),
    at             timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'in' AND from_warehouse IS NULL AND to_warehouse IS NOT NULL)
        OR (kind = 'out' AND from_warehouse IS NOT NULL AND to_warehouse IS NULL)
        OR (kind = 'transfer' AND from_warehouse IS NOT NULL AND to_warehouse IS NOT NULL
            AND from_warehouse <> to_warehouse)
        OR (kind = 'adjust' AND (from_warehouse IS NULL) <> (to_warehouse IS NULL)))
);
CREATE INDEX stock_movements_product ON commerce.stock_movements (product_code, at);

-- Orders: what the platform calls them, how they are paid and fulfilled there,
-- where they go, who placed them. Phone orders take numbers from phone_order_seq.
ALTER TABLE commerce.orders
    ADD COLUMN external_id        text CHECK (length(external_id) <= 64),
    ADD COLUMN financial_status   text NOT NULL DEFAULT '' CHECK (length(financial_status) <= 32),
    ADD COLUMN fulfillment_status text NOT NULL DEFAULT '' CHECK (length(fulfillment_status) <= 32),
    ADD COLUMN shipping_address   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(shipping_address) = 'object'),
    ADD COLUMN note               text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    ADD COLUMN placed_via         text NOT NULL DEFAULT 'platform' CHECK (placed_via IN ('platform', 'phone', 'import'));
CREATE UNIQUE INDEX orders_external ON commerce.orders (platform, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX orders_customer ON commerce.orders (customer_id, created_at);
CREATE SEQUENCE commerce.phone_order_seq START 100001;

-- Which warehouse an item's stock is reserved in, and how many.
ALTER TABLE commerce.order_items
    ADD COLUMN warehouse_code text REFERENCES commerce.warehouses (code),
    ADD COLUMN reserved       integer NOT NULL DEFAULT 0 CHECK (reserved >= 0);

-- Money received (or given back) for an order.
CREATE TABLE commerce.payments (
    id           bigserial PRIMARY KEY,
    order_number text NOT NULL REFERENCES commerce.orders (order_number),
    platform     text REFERENCES commerce.platforms (name),
    external_id  text CHECK (length(external_id) <= 64),
    method       text NOT NULL CHECK (method IN ('card', 'cash', 'bank_transfer', 'cash_on_delivery', 'points',
                                                  'wallet', 'other')),
    kind         text NOT NULL DEFAULT 'payment' CHECK (kind IN ('payment', 'refund')),
    status       text NOT NULL DEFAULT 'paid' CHECK (status IN ('pending', 'paid', 'failed', 'voided')),
    amount_minor bigint NOT NULL CHECK (amount_minor BETWEEN 0 AND 1000000000000),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reference    text NOT NULL DEFAULT '' CHECK (length(reference) <= 128),
    by_whom      text NOT NULL DEFAULT '' CHECK (length(by_whom) <= 64),
    version      bigint NOT NULL DEFAULT 0,
    paid_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX payments_external ON commerce.payments (platform, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX payments_order ON commerce.payments (order_number);

-- Receipts and invoices issued for payments.
CREATE TABLE commerce.receipts (
    id             bigserial PRIMARY KEY,
    payment_id     bigint NOT NULL REFERENCES commerce.payments (id),
    receipt_number text NOT NULL UNIQUE CHECK (length(receipt_number) BETWEEN 1 AND 64),
    kind           text NOT NULL DEFAULT 'receipt' CHECK (kind IN ('receipt', 'invoice')),
    title          text NOT NULL DEFAULT '' CHECK (length(title) <= 200),
    tax_id         text NOT NULL DEFAULT '' CHECK (length(tax_id) <= 64),
    amount_minor   bigint NOT NULL CHECK (amount_minor BETWEEN 0 AND 1000000000000),
    issued_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX receipts_payment ON commerce.receipts (payment_id);

-- Parcels sent for an order: carrier, tracking number, fee.
CREATE TABLE commerce.shipments (
    id              bigserial PRIMARY KEY,
    order_number    text NOT NULL REFERENCES commerce.orders (order_number),
    platform        text REFERENCES commerce.platforms (name),
    external_id     text CHECK (length(external_id) <= 64),
    warehouse_code  text REFERENCES commerce.warehouses (code),
    carrier         text NOT NULL DEFAULT '' CHECK (length(carrier) <= 64),
    tracking_number text NOT NULL DEFAULT '' CHECK (length(tracking_number) <= 64),
    fee_minor       bigint NOT NULL DEFAULT 0 CHECK (fee_minor BETWEEN 0 AND 1000000000000),
    currency        text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_transit', 'out_for_delivery',
                                                                     'delivered', 'failed', 'returned', 'cancelled')),
    version         bigint NOT NULL DEFAULT 0,
    shipped_at      timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX shipments_external ON commerce.shipments (platform, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX shipments_order ON commerce.shipments (order_number);
CREATE INDEX shipments_tracking ON commerce.shipments (tracking_number) WHERE tracking_number <> '';

-- Which order lines (and how many of each) went into a shipment.
CREATE TABLE commerce.shipment_items (
    shipment_id bigint NOT NULL REFERENCES commerce.shipments (id) ON DELETE CASCADE,
    line        integer NOT NULL,
    quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 100000),
    PRIMARY KEY (shipment_id, line)
);

-- The carrier's tracking history of a shipment.
CREATE TABLE commerce.shipment_events (
    id          bigserial PRIMARY KEY,
    shipment_id bigint NOT NULL REFERENCES commerce.shipments (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    status      text NOT NULL CHECK (length(status) BETWEEN 1 AND 32),
    location    text NOT NULL DEFAULT '' CHECK (length(location) <= 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    UNIQUE (shipment_id, at, status)
);

-- Returns and exchanges of an order, and their progress.
CREATE TABLE commerce.returns (
    id            bigserial PRIMARY KEY,
    return_number text NOT NULL UNIQUE CHECK (length(return_number) BETWEEN 1 AND 64),
    order_number  text NOT NULL REFERENCES commerce.orders (order_number),
    kind          text NOT NULL CHECK (kind IN ('return', 'exchange')),
    status        text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'approved', 'rejected', 'received',
                                                                       'refunded', 'exchanged', 'closed')),
    reason        text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    refund_minor  bigint NOT NULL DEFAULT 0 CHECK (refund_minor BETWEEN 0 AND 1000000000000),
    by_whom       text NOT NULL DEFAULT '' CHECK (length(by_whom) <= 64),
    source        text NOT NULL DEFAULT '' CHECK (length(source) <= 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX returns_order ON commerce.returns (order_number);
CREATE SEQUENCE commerce.return_number_seq START 1;

-- The order lines a return or exchange covers; for an exchange, what replaces them.
CREATE TABLE commerce.return_items (
    return_id         bigint NOT NULL REFERENCES commerce.returns (id) ON DELETE CASCADE,
    line              integer NOT NULL,
    quantity          integer NOT NULL CHECK (quantity BETWEEN 1 AND 100000),
    replacement_code  text REFERENCES commerce.products (code),
    PRIMARY KEY (return_id, line)
);

-- Customers who asked to be told when a product is back in stock, or when new
-- products (of a category, or any: '') arrive.
CREATE TABLE commerce.subscriptions (
    id           bigserial PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES commerce.customers (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('back_in_stock', 'new_product')),
    product_code text REFERENCES commerce.products (code),
    category     text NOT NULL DEFAULT '' CHECK (length(category) <= 100),
    channel      text NOT NULL DEFAULT 'sms' CHECK (channel IN ('sms', 'email', 'call')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    notified_at  timestamptz,
    CHECK ((kind = 'back_in_stock') = (product_code IS NOT NULL))
);
CREATE UNIQUE INDEX subscriptions_once ON commerce.subscriptions (customer_id, kind, coalesce(product_code, ''), category)
    WHERE notified_at IS NULL;
CREATE INDEX subscriptions_product ON commerce.subscriptions (product_code) WHERE notified_at IS NULL;
