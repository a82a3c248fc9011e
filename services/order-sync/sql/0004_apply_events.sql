-- commerce: applying platform events (orders, customers, products, stock,
-- payments, shipments) as functions, so that the writer applies a whole batch
-- of webhooks in one round trip and one commit. Each event runs in its own
-- subtransaction: a refused event leaves no trace and does not fail the rest.
--
-- An event is {"kind", "platform", "event_id" (NULL: no de-duplication),
-- "data"} with data already validated by order-sync (docs/order-sync-openapi.yaml
-- gives the shapes). A result is {"code": HTTP status, "result" or "error",
-- "events": [{"topic", "key", ...fields of the bus event}]}.
-- Refusals raise SQLSTATE CC409 (conflict) or CC422 (not allowed).

-- The shop domain a platform's Shopify or WooCommerce webhooks name.
ALTER TABLE commerce.platforms ADD COLUMN domain text UNIQUE CHECK (length(domain) BETWEEN 1 AND 255);

-- The steps of the shortest allowed walk from one status to another (NULL: none).
CREATE FUNCTION commerce.status_path(from_s text, to_s text) RETURNS text[]
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE walk (status, path) AS (
        SELECT from_s, ARRAY[]::text[]
        UNION ALL
        SELECT t.to_status, w.path || t.to_status
          FROM walk w JOIN commerce.status_transitions t ON t.from_status = w.status
         WHERE t.to_status <> ALL (w.path) AND t.to_status <> from_s AND cardinality(w.path) < 8)
    SELECT path FROM walk WHERE status = to_s AND cardinality(path) > 0 ORDER BY cardinality(path) LIMIT 1
$$;

-- Moves an order to status through allowed steps, auditing each. Returns the
-- status it had (the same when unchanged). Raises CC422 when no walk exists.
CREATE FUNCTION commerce.move_order(num text, old_status text, new_status text, who text, via text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    steps text[];
    prev text := old_status;
    s text;
BEGIN
    IF old_status = new_status THEN RETURN old_status; END IF;
    steps := commerce.status_path(old_status, new_status);
    IF steps IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CC422', MESSAGE = format('status %s -> %s is not allowed', old_status, new_status);
    END IF;
    FOREACH s IN ARRAY steps LOOP
        INSERT INTO commerce.order_audit (order_number, from_status, to_status, by_whom, source) VALUES (num, prev, s, who, via);
        prev := s;
    END LOOP;
    UPDATE commerce.orders SET status = new_status, updated_at = now() WHERE order_number = num;
    RETURN old_status;
END $$;

CREATE FUNCTION commerce.order_event(num text, previous text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('topic', CASE WHEN previous IS NULL THEN 'order.created' ELSE 'order.updated' END,
                              'key', o.order_number, 'status', o.status, 'previous', coalesce(previous, ''),
                              'total', o.total_minor, 'currency', o.currency, 'platform', o.platform,
                              'customer_id', coalesce(c.external_id, ''))
      FROM commerce.orders o LEFT JOIN commerce.customers c ON c.id = o.customer_id WHERE o.order_number = num
$$;

-- Creates or updates a customer from c ({"id", "name", "phone", "phones",
-- "email", "category", "birthday", "gender", "language", "note",
-- "custom_fields", "addresses", "version"}); keys left out keep their values.
-- Returns the customer's id.
CREATE FUNCTION commerce.upsert_customer(p text, c jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cid bigint;
BEGIN
    INSERT INTO commerce.customers AS k (platform, external_id, name, phone, email, category, birthday, gender,
                                         language, note, custom_fields, version)
    VALUES (p, c->>'id', coalesce(c->>'name', ''), coalesce(c->>'phone', ''), coalesce(c->>'email', ''),
            coalesce(c->>'category', 'regular'), nullif(c->>'birthday', '')::date, coalesce(c->>'gender', ''),
            coalesce(c->>'language', ''), coalesce(c->>'note', ''), coalesce(c->'custom_fields', '{}'),
            coalesce((c->>'version')::bigint, 0))
    ON CONFLICT (platform, external_id) DO UPDATE SET
        name = CASE WHEN c ? 'name' THEN EXCLUDED.name ELSE k.name END,
        phone = CASE WHEN c ? 'phone' THEN EXCLUDED.phone ELSE k.phone END,
        email = CASE WHEN c ? 'email' THEN EXCLUDED.email ELSE k.email END,
        category = CASE WHEN c ? 'category' THEN EXCLUDED.category ELSE k.category END,
        birthday = CASE WHEN c ? 'birthday' THEN EXCLUDED.birthday ELSE k.birthday END,
        gender = CASE WHEN c ? 'gender' THEN EXCLUDED.gender ELSE k.gender END,
        language = CASE WHEN c ? 'language' THEN EXCLUDED.language ELSE k.language END,
        note = CASE WHEN c ? 'note' THEN EXCLUDED.note ELSE k.note END,
        custom_fields = CASE WHEN c ? 'custom_fields' THEN EXCLUDED.custom_fields ELSE k.custom_fields END,
        version = greatest(k.version, EXCLUDED.version),
        updated_at = now()
    RETURNING id INTO cid;
    IF c ? 'phones' THEN
        DELETE FROM commerce.customer_phones WHERE customer_id = cid;
        INSERT INTO commerce.customer_phones (customer_id, phone, kind)
        SELECT cid, x->>'phone', coalesce(x->>'kind', 'mobile') FROM jsonb_array_elements(c->'phones') x
        ON CONFLICT DO NOTHING;
    END IF;
    IF coalesce(c->>'phone', '') <> '' THEN
        INSERT INTO commerce.customer_phones (customer_id, phone) VALUES (cid, c->>'phone') ON CONFLICT DO NOTHING;
    END IF;
    IF c ? 'addresses' THEN
        DELETE FROM commerce.customer_addresses WHERE customer_id = cid;
        INSERT INTO commerce.customer_addresses (customer_id, kind, name, phone, line1, line2, city, province,
                                                 postal_code, country, is_default)
        SELECT cid, coalesce(a->>'kind', 'shipping'), coalesce(a->>'name', ''), coalesce(a->>'phone', ''),
               coalesce(a->>'line1', ''), coalesce(a->>'line2', ''), coalesce(a->>'city', ''),
               coalesce(a->>'province', ''), coalesce(a->>'postal_code', ''), coalesce(a->>'country', ''),
               coalesce((a->>'is_default')::boolean, false)
          FROM jsonb_array_elements(c->'addresses') a;
    END IF;
    RETURN cid;
END $$;

CREATE FUNCTION commerce.customer_event(cid bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('topic', 'customer.updated', 'key', c.external_id, 'customer_id', c.external_id,
                              'platform', c.platform, 'name', c.name, 'phone', c.phone, 'email', c.email,
                              'category', c.category, 'birthday', coalesce(c.birthday::text, ''),
                              'phones', coalesce((SELECT jsonb_agg(phone ORDER BY phone) FROM commerce.customer_phones
                                                   WHERE customer_id = c.id), '[]'),
                              'points', coalesce((SELECT sum(delta) FROM commerce.points_ledger WHERE customer_id = c.id), 0))
      FROM commerce.customers c WHERE c.id = cid
$$;

-- The order number an event's data names, by our number or the platform's id.
CREATE FUNCTION commerce.order_of(p text, d jsonb) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    num text;
BEGIN
    IF d ? 'order_number' THEN
        SELECT order_number INTO num FROM commerce.orders WHERE order_number = d->>'order_number' AND platform = p;
    ELSE
        SELECT order_number INTO num FROM commerce.orders WHERE platform = p AND external_id = d->>'order_external_id';
    END IF;
    IF num IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CC422',
            MESSAGE = format('no such order %s', coalesce(d->>'order_number', d->>'order_external_id'));
    END IF;
    RETURN num;
END $$;

-- Creates or updates a shipment of order num from s ({"id", "carrier",
-- "tracking_number", "fee", "currency", "status", "version", "items",
-- "events"}); moves the order to shipped or delivered when the parcel says so.
-- Returns the bus events, or NULL when s is older than what is stored.
CREATE FUNCTION commerce.upsert_shipment(p text, num text, s jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid bigint;
    old record;
    st text := coalesce(s->>'status', 'pending');
    ost text;
    prev text;
    out jsonb := '[]';
BEGIN
    SELECT id, status, version INTO old FROM commerce.shipments WHERE platform = p AND external_id = s->>'id' FOR UPDATE;
    IF FOUND AND old.version >= coalesce((s->>'version')::bigint, 0) AND old.version > 0 THEN RETURN NULL; END IF;
    INSERT INTO commerce.shipments AS k (order_number, platform, external_id, carrier, tracking_number, fee_minor,
                                         currency, status, version, shipped_at, delivered_at)
    VALUES (num, p, s->>'id', coalesce(s->>'carrier', ''), coalesce(s->>'tracking_number', ''),
            coalesce((s->>'fee')::bigint, 0), coalesce(s->>'currency', 'USD'), st, coalesce((s->>'version')::bigint, 0),
            CASE WHEN st <> 'pending' THEN now() END, CASE WHEN st = 'delivered' THEN now() END)
    ON CONFLICT (platform, external_id) WHERE external_id IS NOT NULL DO UPDATE SET
        carrier = EXCLUDED.carrier, tracking_number = EXCLUDED.tracking_number, fee_minor = EXCLUDED.fee_minor,
        currency = EXCLUDED.currency, status = EXCLUDED.status, version = EXCLUDED.version,
        shipped_at = coalesce(k.shipped_at, EXCLUDED.shipped_at),
        delivered_at = coalesce(k.delivered_at, EXCLUDED.delivered_at), updated_at = now()
    RETURNING id INTO sid;
    IF s ? 'items' THEN
        DELETE FROM commerce.shipment_items WHERE shipment_id = sid;
        INSERT INTO commerce.shipment_items (shipment_id, line, quantity)
        SELECT sid, (i->>'line')::int, (i->>'quantity')::int FROM jsonb_array_elements(s->'items') i;
    END IF;
    IF s ? 'events' THEN
        INSERT INTO commerce.shipment_events (shipment_id, at, status, location, description)
        SELECT sid, (e->>'at')::timestamptz, e->>'status', coalesce(e->>'location', ''), coalesce(e->>'description', '')
          FROM jsonb_array_elements(s->'events') e
        ON CONFLICT DO NOTHING;
    END IF;
    IF old.status IS DISTINCT FROM st OR old.id IS NULL THEN
        out := out || jsonb_build_array(jsonb_build_object(
            'topic', 'shipment.updated', 'key', num, 'order_number', num, 'carrier', coalesce(s->>'carrier', ''),
            'tracking_number', coalesce(s->>'tracking_number', ''), 'status', st, 'previous', coalesce(old.status, ''),
            'fee', coalesce((s->>'fee')::bigint, 0), 'currency', coalesce(s->>'currency', 'USD'), 'platform', p,
            'shipment_id', coalesce(s->>'id', sid::text)));
    END IF;
    SELECT status INTO ost FROM commerce.orders WHERE order_number = num FOR UPDATE;
    IF st IN ('in_transit', 'out_for_delivery', 'delivered') AND ost IN ('ordered', 'reviewed') THEN
        prev := commerce.move_order(num, ost, 'shipped', p, 'webhook');
        out := out || jsonb_build_array(commerce.order_event(num, prev));
        ost := 'shipped';
    END IF;
    IF st = 'delivered' AND ost = 'shipped' THEN
        prev := commerce.move_order(num, ost, 'delivered', p, 'webhook');
        out := out || jsonb_build_array(commerce.order_event(num, prev));
    END IF;
    RETURN out;
END $$;

-- An order with its customer, items (replacing the lines sent) and shipments.
CREATE FUNCTION commerce.apply_order(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    num text := d->>'order_number';
    old record;
    cid bigint;
    prev text;
    nitems int;
    s jsonb;
    out jsonb := '[]';
    more jsonb;
BEGIN
    SELECT platform, status, version INTO old FROM commerce.orders WHERE order_number = num FOR UPDATE;
    IF FOUND THEN
        IF old.platform <> p THEN
            RAISE EXCEPTION USING ERRCODE = 'CC409', MESSAGE = format('order %s belongs to another platform', num);
        END IF;
        IF (d->>'version')::bigint <= old.version THEN RETURN jsonb_build_object('code', 200, 'result', 'stale'); END IF;
    END IF;
    IF d ? 'customer' THEN cid := commerce.upsert_customer(p, d->'customer'); END IF;
    IF old.status IS NULL THEN
        INSERT INTO commerce.orders (order_number, platform, customer_id, status, total_minor, currency, version,
                                     external_id, financial_status, fulfillment_status, shipping_address, note)
        VALUES (num, p, cid, d->>'status', (d->>'total')::bigint, d->>'currency', (d->>'version')::bigint,
                d->>'external_id', coalesce(d->>'financial_status', ''), coalesce(d->>'fulfillment_status', ''),
                coalesce(d->'shipping_address', '{}'), coalesce(d->>'note', ''));
        INSERT INTO commerce.order_audit (order_number, from_status, to_status, by_whom, source)
        VALUES (num, NULL, d->>'status', p, 'webhook');
    ELSE
        prev := commerce.move_order(num, old.status, d->>'status', p, 'webhook');
        UPDATE commerce.orders SET
            customer_id = coalesce(cid, customer_id), total_minor = (d->>'total')::bigint, currency = d->>'currency',
            version = (d->>'version')::bigint, external_id = coalesce(d->>'external_id', external_id),
            financial_status = coalesce(d->>'financial_status', financial_status),
            fulfillment_status = coalesce(d->>'fulfillment_status', fulfillment_status),
            shipping_address = coalesce(d->'shipping_address', shipping_address), note = coalesce(d->>'note', note),
            updated_at = now()
         WHERE order_number = num;
    END IF;
    IF d ? 'items' THEN
        INSERT INTO commerce.order_items AS k (order_number, line, sku, name, quantity, unit_minor)
        SELECT num, n::int, i->>'sku', coalesce(i->>'name', ''), (i->>'quantity')::int, (i->>'unit_price')::bigint
          FROM jsonb_array_elements(d->'items') WITH ORDINALITY AS x (i, n)
        ON CONFLICT (order_number, line) DO UPDATE SET sku = EXCLUDED.sku, name = EXCLUDED.name,
            quantity = EXCLUDED.quantity, unit_minor = EXCLUDED.unit_minor;
        nitems := jsonb_array_length(d->'items');
        IF old.status IS NOT NULL THEN
            DELETE FROM commerce.order_items WHERE order_number = num AND line > nitems;
        END IF;
    END IF;
    out := jsonb_build_array(commerce.order_event(num, CASE WHEN old.status IS NULL THEN NULL ELSE prev END));
    FOR s IN SELECT value FROM jsonb_array_elements(coalesce(d->'shipments', '[]')) LOOP
        more := commerce.upsert_shipment(p, num, s);
        IF more IS NOT NULL THEN out := out || more; END IF;
    END LOOP;
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', out);
END $$;

CREATE FUNCTION commerce.apply_customer(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
    cid bigint;
BEGIN
    SELECT version INTO v FROM commerce.customers WHERE platform = p AND external_id = d->>'id' FOR UPDATE;
    IF FOUND AND v >= (d->>'version')::bigint THEN RETURN jsonb_build_object('code', 200, 'result', 'stale'); END IF;
    cid := commerce.upsert_customer(p, d);
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', jsonb_build_array(commerce.customer_event(cid)));
END $$;

CREATE FUNCTION commerce.apply_product(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    old record;
BEGIN
    SELECT platform, version INTO old FROM commerce.products WHERE code = d->>'code' FOR UPDATE;
    IF FOUND THEN
        IF old.platform IS DISTINCT FROM p THEN
            RAISE EXCEPTION USING ERRCODE = 'CC409', MESSAGE = format('product %s belongs to another platform', d->>'code');
        END IF;
        IF old.version >= (d->>'version')::bigint THEN RETURN jsonb_build_object('code', 200, 'result', 'stale'); END IF;
    END IF;
    INSERT INTO commerce.products AS k (code, platform, external_id, name, description, category, price_minor, currency,
                                        specification, status, version)
    VALUES (d->>'code', p, d->>'external_id', d->>'name', coalesce(d->>'description', ''), coalesce(d->>'category', ''),
            (d->>'price')::bigint, d->>'currency', coalesce(d->'specification', '{}'), coalesce(d->>'status', 'active'),
            (d->>'version')::bigint)
    ON CONFLICT (code) DO UPDATE SET
        external_id = coalesce(EXCLUDED.external_id, k.external_id), name = EXCLUDED.name,
        description = CASE WHEN d ? 'description' THEN EXCLUDED.description ELSE k.description END,
        category = CASE WHEN d ? 'category' THEN EXCLUDED.category ELSE k.category END,
        price_minor = EXCLUDED.price_minor, currency = EXCLUDED.currency,
        specification = CASE WHEN d ? 'specification' THEN EXCLUDED.specification ELSE k.specification END,
        status = CASE WHEN d ? 'status' THEN EXCLUDED.status ELSE k.status END,
        version = EXCLUDED.version, updated_at = now();
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', '[]'::jsonb);
END $$;

-- The platform's count of a product in a warehouse; the difference is kept as
-- an adjusting movement.
CREATE FUNCTION commerce.apply_stock(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_code text := d->>'product_code';
    v_wh text := d->>'warehouse';
    n int := (d->>'on_hand')::int;
    old record;
    r int;
BEGIN
    PERFORM 1 FROM commerce.products WHERE code = v_code;
    IF NOT FOUND THEN RAISE EXCEPTION USING ERRCODE = 'CC422', MESSAGE = format('no such product %s', v_code); END IF;
    INSERT INTO commerce.warehouses (code, name) VALUES (v_wh, v_wh) ON CONFLICT DO NOTHING;
    SELECT on_hand, version INTO old FROM commerce.stock WHERE product_code = v_code AND warehouse_code = v_wh FOR UPDATE;
    IF FOUND AND old.version >= (d->>'version')::bigint THEN RETURN jsonb_build_object('code', 200, 'result', 'stale'); END IF;
    INSERT INTO commerce.stock AS k (product_code, warehouse_code, on_hand, version) VALUES (v_code, v_wh, n, (d->>'version')::bigint)
    ON CONFLICT (product_code, warehouse_code) DO UPDATE SET on_hand = EXCLUDED.on_hand, version = EXCLUDED.version,
        updated_at = now()
    RETURNING reserved INTO r;
    IF n <> coalesce(old.on_hand, 0) THEN
        INSERT INTO commerce.stock_movements (product_code, kind, from_warehouse, to_warehouse, quantity, reason, by_whom)
        VALUES (v_code, 'adjust', CASE WHEN n < coalesce(old.on_hand, 0) THEN v_wh END,
                CASE WHEN n > coalesce(old.on_hand, 0) THEN v_wh END, abs(n - coalesce(old.on_hand, 0)), 'platform count', p);
    END IF;
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', jsonb_build_array(jsonb_build_object(
        'topic', 'stock.changed', 'key', v_code, 'sku', v_code, 'warehouse', v_wh, 'on_hand', n, 'reserved', r)));
END $$;

CREATE FUNCTION commerce.apply_payment(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    num text := commerce.order_of(p, d);
    v bigint;
BEGIN
    SELECT version INTO v FROM commerce.payments WHERE platform = p AND external_id = d->>'id' FOR UPDATE;
    IF FOUND AND v >= (d->>'version')::bigint THEN RETURN jsonb_build_object('code', 200, 'result', 'stale'); END IF;
    INSERT INTO commerce.payments AS k (order_number, platform, external_id, method, kind, status, amount_minor,
                                        currency, reference, by_whom, version, paid_at)
    VALUES (num, p, d->>'id', d->>'method', coalesce(d->>'kind', 'payment'), coalesce(d->>'status', 'paid'),
            (d->>'amount')::bigint, d->>'currency', coalesce(d->>'reference', ''), p, (d->>'version')::bigint,
            CASE WHEN coalesce(d->>'status', 'paid') = 'paid' THEN coalesce((d->>'paid_at')::timestamptz, now()) END)
    ON CONFLICT (platform, external_id) WHERE external_id IS NOT NULL DO UPDATE SET
        method = EXCLUDED.method, kind = EXCLUDED.kind, status = EXCLUDED.status, amount_minor = EXCLUDED.amount_minor,
        currency = EXCLUDED.currency, reference = EXCLUDED.reference, version = EXCLUDED.version,
        paid_at = coalesce(EXCLUDED.paid_at, k.paid_at);
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', '[]'::jsonb);
END $$;

CREATE FUNCTION commerce.apply_shipment(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    ev jsonb := commerce.upsert_shipment(p, commerce.order_of(p, d), d);
BEGIN
    IF ev IS NULL THEN RETURN jsonb_build_object('code', 200, 'result', 'stale'); END IF;
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', ev);
END $$;

-- One event: recorded by its id (a second copy is acknowledged, not applied),
-- then applied by kind.
CREATE FUNCTION commerce.apply_event(e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    p text := e->>'platform';
    d jsonb := e->'data';
BEGIN
    IF e->>'event_id' IS NOT NULL THEN
        INSERT INTO commerce.webhook_events (platform, event_id) VALUES (p, e->>'event_id') ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN RETURN jsonb_build_object('code', 200, 'result', 'duplicate'); END IF;
    END IF;
    CASE e->>'kind'
        WHEN 'order' THEN RETURN commerce.apply_order(p, d);
        WHEN 'customer' THEN RETURN commerce.apply_customer(p, d);
        WHEN 'product' THEN RETURN commerce.apply_product(p, d);
        WHEN 'stock' THEN RETURN commerce.apply_stock(p, d);
        WHEN 'payment' THEN RETURN commerce.apply_payment(p, d);
        WHEN 'shipment' THEN RETURN commerce.apply_shipment(p, d);
        ELSE RAISE EXCEPTION USING ERRCODE = 'CC422', MESSAGE = format('unknown kind %s', e->>'kind');
    END CASE;
END $$;

-- A batch of events, each in its own subtransaction; returns their results in
-- order. Keep batches at 64 events or fewer (PostgreSQL caches 64 open
-- subtransactions per backend; more slow every other session's snapshots).
CREATE FUNCTION commerce.apply_batch(events jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    r jsonb;
    results jsonb[] := '{}';
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(events) LOOP
        BEGIN
            r := commerce.apply_event(e);
        EXCEPTION
            WHEN SQLSTATE 'CC422' THEN r := jsonb_build_object('code', 422, 'error', SQLERRM);
            WHEN SQLSTATE 'CC409' THEN r := jsonb_build_object('code', 409, 'error', SQLERRM);
            WHEN check_violation OR not_null_violation OR string_data_right_truncation OR numeric_value_out_of_range
                 OR invalid_text_representation OR invalid_datetime_format OR datetime_field_overflow
                 OR foreign_key_violation OR invalid_parameter_value OR unique_violation THEN
                r := jsonb_build_object('code', 400, 'error', 'a value is out of range: ' || SQLERRM);
            WHEN OTHERS THEN
                r := jsonb_build_object('code', 500, 'error', 'not applied: ' || SQLSTATE || ' ' || SQLERRM);
        END;
        results := results || r;
    END LOOP;
    RETURN to_jsonb(results);
END $$;
