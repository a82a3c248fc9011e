-- commerce: what the call center tells the platforms back (orders placed by
-- phone, status changes, returns, cancellations), through an outbox written in
-- the same transaction as the change and pushed as signed Standard Webhooks.

-- How pushes to a platform are signed ("whsec_<base64>"; NULL: its webhook
-- secret), whether its endpoint said 410 Gone (no pushes until an operator
-- replays), and where its list of recent orders is polled for reconciliation.
ALTER TABLE commerce.platforms
    ADD COLUMN push_secret   text CHECK (length(push_secret) <= 256),
    ADD COLUMN push_gone_at  timestamptz,
    ADD COLUMN reconcile_url text CHECK (length(reconcile_url) <= 2000);

-- One push per row: webhook-id is 'msg_' || id, the body is kept as sent.
CREATE TABLE commerce.outbox (
    id           bigserial PRIMARY KEY,
    platform     text NOT NULL REFERENCES commerce.platforms (name),
    type         text NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    subject      text NOT NULL CHECK (length(subject) BETWEEN 1 AND 64),   -- the order number
    body         text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT now(),
    last_status  integer,                 -- HTTP status of the last attempt (0: no answer)
    last_error   text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX outbox_due ON commerce.outbox (next_at, id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_subject ON commerce.outbox (platform, subject, id) WHERE delivered_at IS NULL;

-- Pushes given up on (a permanent refusal, or too many attempts): listed and
-- replayed by an operator (tools/order-sync dead, tools/order-sync replay).
CREATE TABLE commerce.outbox_dead (
    id          bigint PRIMARY KEY,       -- the outbox id: a replay keeps the webhook-id
    platform    text NOT NULL REFERENCES commerce.platforms (name),
    type        text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    attempts    integer NOT NULL,
    last_status integer,
    last_error  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    died_at     timestamptz NOT NULL DEFAULT now()
);

-- Pushers LISTEN here, so a committed push leaves at once.
CREATE FUNCTION commerce.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('commerce_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON commerce.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION commerce.outbox_notify();

-- The body of a push about an order: our Standard Webhooks dialect (the one
-- the platform API takes in), with extra fields of the event merged into data.
CREATE FUNCTION commerce.order_push_body(p_type text, p_number text, p_extra jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', p_type,
        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', jsonb_build_object(
            'order_number', o.order_number, 'status', o.status, 'total', o.total_minor,
            'currency', o.currency, 'version', o.version, 'placed_via', o.placed_via, 'note', o.note,
            'shipping_address', o.shipping_address,
            'customer', (SELECT jsonb_build_object('id', c.external_id, 'name', c.name, 'phone', c.phone,
                                                   'email', c.email)
                         FROM commerce.customers c WHERE c.id = o.customer_id),
            'items', (SELECT coalesce(jsonb_agg(jsonb_build_object('sku', i.sku, 'name', i.name,
                                                                   'quantity', i.quantity, 'unit_price', i.unit_minor)
                                                ORDER BY i.line), '[]'::jsonb)
                      FROM commerce.order_items i WHERE i.order_number = o.order_number)) || p_extra)::text
    FROM commerce.orders o WHERE o.order_number = p_number
$$;

-- Reserving stock for an order and releasing it are stock changes too, kept
-- with the goods' movements (from_warehouse names where it is reserved).
ALTER TABLE commerce.stock_movements DROP CONSTRAINT stock_movements_kind_check;
ALTER TABLE commerce.stock_movements ADD CONSTRAINT stock_movements_kind_check
    CHECK (kind IN ('in', 'out', 'transfer', 'adjust', 'reserve', 'release'));
ALTER TABLE commerce.stock_movements DROP CONSTRAINT stock_movements_check;
ALTER TABLE commerce.stock_movements ADD CONSTRAINT stock_movements_check
    CHECK ((kind = 'in' AND from_warehouse IS NULL AND to_warehouse IS NOT NULL)
        OR (kind = 'out' AND from_warehouse IS NOT NULL AND to_warehouse IS NULL)
        OR (kind = 'transfer' AND from_warehouse IS NOT NULL AND to_warehouse IS NOT NULL
            AND from_warehouse <> to_warehouse)
        OR (kind = 'adjust' AND (from_warehouse IS NULL) <> (to_warehouse IS NULL))
        OR (kind IN ('reserve', 'release') AND from_warehouse IS NOT NULL AND to_warehouse IS NULL
            AND order_number IS NOT NULL));

-- The audit trail keeps every change made by phone, not only status changes:
-- action says what (status, create, edit, review, ship, payment, return), detail how.
ALTER TABLE commerce.order_audit
    ADD COLUMN action text NOT NULL DEFAULT 'status' CHECK (length(action) <= 32),
    ADD COLUMN detail text NOT NULL DEFAULT '' CHECK (length(detail) <= 2000);
