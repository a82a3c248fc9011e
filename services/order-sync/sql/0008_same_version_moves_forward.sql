-- commerce: two updates of an order carrying the same version (Shopify's and
-- WooCommerce's updated_at have whole seconds: an order created and paid in
-- the same second) are told apart by the status machine: the one further
-- along is applied whichever comes second; an equal version with the same or
-- an earlier status is stale, as before.

CREATE OR REPLACE FUNCTION commerce.apply_order(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    num text := d->>'order_number';
    st text := d->>'status';
    old record;
    cid bigint;
    prev text;
    cust text := d->'customer'->>'id';
    s jsonb;
    out jsonb;
    more jsonb;
BEGIN
    SELECT o.platform, o.status, o.version, o.customer_id INTO old
      FROM commerce.orders o WHERE o.order_number = num FOR UPDATE;
    IF FOUND THEN
        IF old.platform <> p THEN
            RAISE EXCEPTION USING ERRCODE = 'CC409', MESSAGE = format('order %s belongs to another platform', num);
        END IF;
        IF (d->>'version')::bigint < old.version
           OR ((d->>'version')::bigint = old.version
               AND (old.status = st OR commerce.status_path(old.status, st) IS NULL)) THEN
            RETURN jsonb_build_object('code', 200, 'result', 'stale');
        END IF;
    END IF;
    IF cust IS NOT NULL THEN cid := commerce.upsert_customer(p, d->'customer'); END IF;
    IF old.status IS NULL THEN
        WITH o AS (
            INSERT INTO commerce.orders (order_number, platform, customer_id, status, total_minor, currency, version,
                                         external_id, financial_status, fulfillment_status, shipping_address, note)
            VALUES (num, p, cid, st, (d->>'total')::bigint, d->>'currency', (d->>'version')::bigint,
                    d->>'external_id', coalesce(d->>'financial_status', ''), coalesce(d->>'fulfillment_status', ''),
                    coalesce(d->'shipping_address', '{}'), coalesce(d->>'note', ''))
            RETURNING order_number),
        a AS (
            INSERT INTO commerce.order_audit (order_number, from_status, to_status, by_whom, source)
            SELECT order_number, NULL, st, p, 'webhook' FROM o)
        INSERT INTO commerce.order_items (order_number, line, sku, name, quantity, unit_minor)
        SELECT o.order_number, x.n::int, x.i->>'sku', coalesce(x.i->>'name', ''), (x.i->>'quantity')::int,
               (x.i->>'unit_price')::bigint
          FROM o, jsonb_array_elements(d->'items') WITH ORDINALITY AS x (i, n);
    ELSE
        prev := commerce.move_order(num, old.status, st, p, 'webhook');
        UPDATE commerce.orders SET
            customer_id = coalesce(cid, customer_id), total_minor = (d->>'total')::bigint, currency = d->>'currency',
            version = (d->>'version')::bigint, external_id = coalesce(d->>'external_id', external_id),
            financial_status = coalesce(d->>'financial_status', financial_status),
            fulfillment_status = coalesce(d->>'fulfillment_status', fulfillment_status),
            shipping_address = coalesce(d->'shipping_address', shipping_address), note = coalesce(d->>'note', note),
            updated_at = now()
         WHERE order_number = num;
        IF d ? 'items' THEN
            WITH up AS (
                INSERT INTO commerce.order_items AS k (order_number, line, sku, name, quantity, unit_minor)
                SELECT num, x.n::int, x.i->>'sku', coalesce(x.i->>'name', ''), (x.i->>'quantity')::int,
                       (x.i->>'unit_price')::bigint
                  FROM jsonb_array_elements(d->'items') WITH ORDINALITY AS x (i, n)
                ON CONFLICT (order_number, line) DO UPDATE SET sku = EXCLUDED.sku, name = EXCLUDED.name,
                    quantity = EXCLUDED.quantity, unit_minor = EXCLUDED.unit_minor)
            DELETE FROM commerce.order_items WHERE order_number = num AND line > jsonb_array_length(d->'items');
        END IF;
        IF cust IS NULL THEN
            SELECT external_id INTO cust FROM commerce.customers WHERE id = old.customer_id;
        END IF;
    END IF;
    out := jsonb_build_array(jsonb_build_object(
        'topic', CASE WHEN prev IS NULL THEN 'order.created' ELSE 'order.updated' END, 'key', num, 'status', st,
        'previous', coalesce(prev, ''), 'total', (d->>'total')::bigint, 'currency', d->>'currency', 'platform', p,
        'customer_id', coalesce(cust, '')));
    IF d ? 'shipments' THEN
        FOR s IN SELECT value FROM jsonb_array_elements(d->'shipments') LOOP
            more := commerce.upsert_shipment(p, num, s);
            IF more IS NOT NULL THEN out := out || more; END IF;
        END LOOP;
    END IF;
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', out);
END $$;
