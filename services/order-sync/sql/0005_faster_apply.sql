-- commerce: fewer statements per applied order (each costs an executor
-- start): the customer with its main phone in one statement, a new order with
-- its audit row and items in one, and the order event built from the values
-- at hand instead of read back.

CREATE OR REPLACE FUNCTION commerce.upsert_customer(p text, c jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cid bigint;
BEGIN
    WITH k AS (
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
        RETURNING id, phone),
    main_phone AS (
        INSERT INTO commerce.customer_phones (customer_id, phone)
        SELECT id, phone FROM k WHERE phone <> '' AND NOT c ? 'phones'
        ON CONFLICT DO NOTHING)
    SELECT id INTO cid FROM k;
    IF c ? 'phones' THEN
        DELETE FROM commerce.customer_phones WHERE customer_id = cid;
        INSERT INTO commerce.customer_phones (customer_id, phone, kind)
        SELECT cid, x->>'phone', coalesce(x->>'kind', 'mobile') FROM jsonb_array_elements(c->'phones') x
        UNION ALL SELECT cid, c->>'phone', 'mobile' WHERE coalesce(c->>'phone', '') <> ''
        ON CONFLICT DO NOTHING;
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
        IF (d->>'version')::bigint <= old.version THEN RETURN jsonb_build_object('code', 200, 'result', 'stale'); END IF;
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
