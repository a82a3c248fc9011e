-- commerce: what platforms send in is never lost for want of a status, and
-- two shops may use the same order numbers.
--
-- * Orders are known to a platform by its own number (platform_number,
--   unique per platform). Ours (order_number) is the platform's number when
--   no other shop holds it, else "<number>@<platform>"; a single-shop install
--   keeps its numbers as they were. Ours stays within 64 characters (what
--   the bus requests take): a longer qualified number is refused (400).
-- * A status a platform's dialect derives (Shopify, WooCommerce: data
--   "status_derived") that the status machine cannot reach from the stored
--   one no longer refuses the event: its other fields are applied, the stored
--   status stays, and the audit trail says why (action status_not_applied).
--   A status sent explicitly (our dialect) still gets its 422.
-- * A customer that comes inside an order is told as customer.updated when
--   the order created or changed it.
-- * A payment that leaves a delivered order paid in full settles it
--   (audited, action payment); partial payments move nothing.

ALTER TABLE commerce.orders ADD COLUMN platform_number text CHECK (length(platform_number) BETWEEN 1 AND 64);
UPDATE commerce.orders SET platform_number = order_number;
ALTER TABLE commerce.orders ALTER COLUMN platform_number SET NOT NULL;
CREATE UNIQUE INDEX orders_platform_number ON commerce.orders (platform, platform_number);

-- An order inserted without the platform's number (phone orders, the batch
-- path of 0009) is known to its platform by ours.
CREATE FUNCTION commerce.orders_platform_number() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.platform_number := coalesce(NEW.platform_number, NEW.order_number);
    RETURN NEW;
END $$;
CREATE TRIGGER orders_platform_number BEFORE INSERT ON commerce.orders
    FOR EACH ROW EXECUTE FUNCTION commerce.orders_platform_number();

-- Our number for a new order that platform p numbers pnum.
CREATE FUNCTION commerce.new_order_number(p text, pnum text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM commerce.orders WHERE order_number = pnum) THEN pnum || '@' || p ELSE pnum END
$$;

-- The order an event's data names, by the platform's number or id.
CREATE OR REPLACE FUNCTION commerce.order_of(p text, d jsonb) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    num text;
BEGIN
    IF d ? 'order_number' THEN
        SELECT order_number INTO num FROM commerce.orders WHERE platform = p AND platform_number = d->>'order_number';
    ELSE
        SELECT order_number INTO num FROM commerce.orders WHERE platform = p AND external_id = d->>'order_external_id';
    END IF;
    IF num IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'CC422',
            MESSAGE = format('no such order %s', coalesce(d->>'order_number', d->>'order_external_id'));
    END IF;
    RETURN num;
END $$;

CREATE OR REPLACE FUNCTION commerce.apply_order(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    pnum text := d->>'order_number';
    num text;
    st text := d->>'status';
    derived boolean := coalesce((d->>'status_derived')::boolean, false);
    old record;
    cid bigint;
    prev text;
    cust text := d->'customer'->>'id';
    before jsonb;
    after jsonb;
    kept text;
    s jsonb;
    out jsonb;
    more jsonb;
    r jsonb;
BEGIN
    SELECT o.order_number, o.status, o.version, o.customer_id INTO old
      FROM commerce.orders o WHERE o.platform = p AND o.platform_number = pnum FOR UPDATE;
    IF FOUND THEN
        num := old.order_number;
        IF (d->>'version')::bigint < old.version
           OR ((d->>'version')::bigint = old.version
               AND (old.status = st OR commerce.status_path(old.status, st) IS NULL)) THEN
            RETURN jsonb_build_object('code', 200, 'result', 'stale');
        END IF;
    ELSE
        num := commerce.new_order_number(p, pnum);
    END IF;
    IF cust IS NOT NULL THEN
        SELECT commerce.customer_event(k.id) INTO before FROM commerce.customers k WHERE k.platform = p AND k.external_id = cust;
        cid := commerce.upsert_customer(p, d->'customer');
        after := commerce.customer_event(cid);
    END IF;
    IF old.status IS NULL THEN
        WITH o AS (
            INSERT INTO commerce.orders (order_number, platform_number, platform, customer_id, status, total_minor,
                                         currency, version, external_id, financial_status, fulfillment_status,
                                         shipping_address, note)
            VALUES (num, pnum, p, cid, st, (d->>'total')::bigint, d->>'currency', (d->>'version')::bigint,
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
        IF derived AND old.status <> st AND commerce.status_path(old.status, st) IS NULL THEN
            kept := format('the platform''s status %s was not applied: %s -> %s is not allowed; the order stays %s',
                           st, old.status, st, old.status);
            INSERT INTO commerce.order_audit (order_number, from_status, to_status, by_whom, source, action, detail)
            VALUES (num, old.status, old.status, p, 'webhook', 'status_not_applied', kept);
            st := old.status;
        END IF;
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
    IF after IS NOT NULL AND after IS DISTINCT FROM before THEN out := out || jsonb_build_array(after); END IF;
    IF d ? 'shipments' THEN
        FOR s IN SELECT value FROM jsonb_array_elements(d->'shipments') LOOP
            more := commerce.upsert_shipment(p, num, s);
            IF more IS NOT NULL THEN out := out || more; END IF;
        END LOOP;
    END IF;
    r := jsonb_build_object('code', 200, 'result', 'applied', 'events', out);
    IF kept IS NOT NULL THEN r := r || jsonb_build_object('note', kept); END IF;
    RETURN r;
END $$;

-- A payment; when it leaves a delivered order paid in full (payments less
-- refunds, in the order's currency), the order is settled.
CREATE OR REPLACE FUNCTION commerce.apply_payment(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    num text := commerce.order_of(p, d);
    v bigint;
    o record;
    paid bigint;
    out jsonb := '[]';
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
    SELECT status, total_minor, currency INTO o FROM commerce.orders WHERE order_number = num FOR UPDATE;
    SELECT coalesce(sum(CASE kind WHEN 'refund' THEN -amount_minor ELSE amount_minor END), 0) INTO paid
      FROM commerce.payments WHERE order_number = num AND status = 'paid' AND currency = o.currency;
    IF o.status = 'delivered' AND paid >= o.total_minor
       AND commerce.status_path('delivered', 'settled') = ARRAY['settled'] THEN
        INSERT INTO commerce.order_audit (order_number, from_status, to_status, by_whom, source, action, detail)
        VALUES (num, 'delivered', 'settled', p, 'webhook', 'payment',
                format('paid in full: %s of %s %s (minor units) by payment %s', paid, o.total_minor, o.currency, d->>'id'));
        UPDATE commerce.orders SET status = 'settled', updated_at = now() WHERE order_number = num;
        out := jsonb_build_array(commerce.order_event(num, 'delivered'));
    END IF;
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', out);
END $$;

-- Batches as in 0009; the new orders applied set-wise tell their customers
-- (customer.updated) when the batch created or changed them.
CREATE OR REPLACE FUNCTION commerce.apply_batch(events jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
DECLARE
    n int := jsonb_array_length(events);
    fast int[] := '{}';
    results jsonb[];
    e jsonb;
    r jsonb;
    i int;
    missing bigint;
    told jsonb;
    cust text;
    evs jsonb;
BEGIN
    results := array_fill(NULL::jsonb, ARRAY[n]);
    BEGIN
        WITH x AS (
            SELECT (t.o - 1)::int AS i, t.e, t.e->>'platform' AS p, t.e->>'event_id' AS id,
                   coalesce(t.e->'data'->>'order_number', t.e->'data'->>'order_external_id', '') AS num,
                   CASE t.e->>'kind' WHEN 'order' THEN t.e->'data'->'customer'->>'id'
                                     WHEN 'customer' THEN t.e->'data'->>'id' END AS cust
              FROM jsonb_array_elements(events) WITH ORDINALITY AS t (e, o)),
        y AS (
            SELECT x.*, count(*) OVER (PARTITION BY p, id) AS nid, count(*) OVER (PARTITION BY num) AS nnum,
                   count(*) OVER (PARTITION BY p, cust) AS ncust
              FROM x)
        SELECT coalesce(array_agg(y.i ORDER BY y.i), '{}') INTO fast
          FROM y
         WHERE y.e->>'kind' = 'order' AND y.id IS NOT NULL AND y.nid = 1 AND y.nnum = 1
           AND (y.cust IS NULL OR y.ncust = 1)
           AND NOT (y.e->'data' ? 'shipments')
           AND NOT (coalesce(y.e->'data'->'customer', '{}') ?| ARRAY['phones', 'addresses'])
           AND NOT EXISTS (SELECT 1 FROM commerce.webhook_events w WHERE w.platform = y.p AND w.event_id = y.id)
           AND NOT EXISTS (SELECT 1 FROM commerce.orders o WHERE o.order_number = y.num);

        IF cardinality(fast) > 0 THEN
            WITH f AS (
                SELECT (t.o - 1)::int AS i, t.e->>'platform' AS p, t.e->>'event_id' AS id, t.e->'data' AS d
                  FROM jsonb_array_elements(events) WITH ORDINALITY AS t (e, o)
                 WHERE (t.o - 1)::int = ANY (fast)),
            we AS (
                INSERT INTO commerce.webhook_events (platform, event_id) SELECT p, id FROM f),
            c AS (
                SELECT f.p, f.d->'customer' AS c FROM f WHERE f.d->'customer'->>'id' IS NOT NULL),
            -- The new customers, then the known ones with the fields sent (an
            -- update does not see the rows this statement inserts).
            cu_new AS (
                INSERT INTO commerce.customers (platform, external_id, name, phone, email, category, birthday, gender,
                                                language, note, custom_fields, version)
                SELECT c.p, c.c->>'id', coalesce(c.c->>'name', ''), coalesce(c.c->>'phone', ''),
                       coalesce(c.c->>'email', ''), coalesce(c.c->>'category', 'regular'),
                       nullif(c.c->>'birthday', '')::date, coalesce(c.c->>'gender', ''), coalesce(c.c->>'language', ''),
                       coalesce(c.c->>'note', ''), coalesce(c.c->'custom_fields', '{}'), coalesce((c.c->>'version')::bigint, 0)
                  FROM c
                ON CONFLICT (platform, external_id) DO NOTHING
                RETURNING id, platform, external_id, true AS changed),
            cu_old AS (
                UPDATE commerce.customers k SET
                    name = CASE WHEN c.c ? 'name' THEN c.c->>'name' ELSE k.name END,
                    phone = CASE WHEN c.c ? 'phone' THEN c.c->>'phone' ELSE k.phone END,
                    email = CASE WHEN c.c ? 'email' THEN c.c->>'email' ELSE k.email END,
                    category = CASE WHEN c.c ? 'category' THEN c.c->>'category' ELSE k.category END,
                    birthday = CASE WHEN c.c ? 'birthday' THEN nullif(c.c->>'birthday', '')::date ELSE k.birthday END,
                    gender = CASE WHEN c.c ? 'gender' THEN c.c->>'gender' ELSE k.gender END,
                    language = CASE WHEN c.c ? 'language' THEN c.c->>'language' ELSE k.language END,
                    note = CASE WHEN c.c ? 'note' THEN c.c->>'note' ELSE k.note END,
                    custom_fields = CASE WHEN c.c ? 'custom_fields' THEN c.c->'custom_fields' ELSE k.custom_fields END,
                    version = greatest(k.version, coalesce((c.c->>'version')::bigint, 0)),
                    updated_at = now()
                  FROM c, commerce.customers was
                 WHERE k.platform = c.p AND k.external_id = c.c->>'id' AND was.id = k.id
                RETURNING k.id, k.platform, k.external_id,
                          (was.name, was.phone, was.email, was.category, was.birthday, was.gender, was.language,
                           was.note, was.custom_fields)
                          IS DISTINCT FROM (k.name, k.phone, k.email, k.category, k.birthday, k.gender, k.language,
                                            k.note, k.custom_fields) AS changed),
            ids AS (
                SELECT * FROM cu_new UNION ALL SELECT * FROM cu_old),
            ph AS (
                INSERT INTO commerce.customer_phones (customer_id, phone)
                SELECT ids.id, c.c->>'phone' FROM c JOIN ids ON ids.platform = c.p AND ids.external_id = c.c->>'id'
                 WHERE coalesce(c.c->>'phone', '') <> ''
                ON CONFLICT DO NOTHING),
            o AS (
                INSERT INTO commerce.orders (order_number, platform, customer_id, status, total_minor, currency, version,
                                             external_id, financial_status, fulfillment_status, shipping_address, note)
                SELECT f.d->>'order_number', f.p, ids.id, f.d->>'status', (f.d->>'total')::bigint, f.d->>'currency',
                       (f.d->>'version')::bigint, f.d->>'external_id', coalesce(f.d->>'financial_status', ''),
                       coalesce(f.d->>'fulfillment_status', ''), coalesce(f.d->'shipping_address', '{}'),
                       coalesce(f.d->>'note', '')
                  FROM f LEFT JOIN ids ON ids.platform = f.p AND ids.external_id = f.d->'customer'->>'id'),
            a AS (
                INSERT INTO commerce.order_audit (order_number, from_status, to_status, by_whom, source)
                SELECT f.d->>'order_number', NULL, f.d->>'status', f.p, 'webhook' FROM f),
            it AS (
                INSERT INTO commerce.order_items (order_number, line, sku, name, quantity, unit_minor)
                SELECT f.d->>'order_number', x.n::int, x.it->>'sku', coalesce(x.it->>'name', ''),
                       (x.it->>'quantity')::int, (x.it->>'unit_price')::bigint
                  FROM f, jsonb_array_elements(f.d->'items') WITH ORDINALITY AS x (it, n))
            -- A customer neither inserted nor updated here was inserted by
            -- someone else meanwhile: the one-by-one way copes with that.
            SELECT count(*) FILTER (WHERE ids.id IS NULL),
                   coalesce(jsonb_object_agg(c.p || '/' || (c.c->>'id'), ids.id) FILTER (WHERE ids.changed), '{}')
              INTO missing, told
              FROM c LEFT JOIN ids ON ids.platform = c.p AND ids.external_id = c.c->>'id';
            IF missing > 0 THEN
                RAISE EXCEPTION 'a customer was inserted meanwhile';
            END IF;
            FOREACH i IN ARRAY fast LOOP
                e := events->i;
                evs := jsonb_build_array(
                    jsonb_build_object('topic', 'order.created', 'key', e->'data'->>'order_number',
                                       'status', e->'data'->>'status', 'previous', '',
                                       'total', (e->'data'->>'total')::bigint, 'currency', e->'data'->>'currency',
                                       'platform', e->>'platform', 'customer_id', coalesce(e->'data'->'customer'->>'id', '')));
                cust := (e->>'platform') || '/' || (e->'data'->'customer'->>'id');
                IF cust IS NOT NULL AND told ? cust THEN
                    evs := evs || jsonb_build_array(commerce.customer_event((told->>cust)::bigint));
                END IF;
                results[i + 1] := jsonb_build_object('code', 200, 'result', 'applied', 'events', evs);
            END LOOP;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        -- Undone: every event goes the one-by-one way.
        fast := '{}';
        results := array_fill(NULL::jsonb, ARRAY[n]);
    END;
    FOR i IN 0 .. n - 1 LOOP
        CONTINUE WHEN i = ANY (fast);
        e := events->i;
        BEGIN
            r := commerce.apply_event(e);
        EXCEPTION
            WHEN SQLSTATE 'CC422' THEN r := jsonb_build_object('code', 422, 'error', SQLERRM);
            WHEN SQLSTATE 'CC409' THEN r := jsonb_build_object('code', 409, 'error', SQLERRM);
            WHEN check_violation OR not_null_violation OR string_data_right_truncation OR numeric_value_out_of_range
                 OR invalid_text_representation OR invalid_datetime_format OR datetime_field_overflow
                 OR foreign_key_violation OR invalid_parameter_value OR unique_violation THEN
                r := jsonb_build_object('code', 400, 'error', 'a value is out of range: ' || SQLERRM);
            WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
                r := jsonb_build_object('code', 503, 'error', 'busy with the same records; deliver again');
            WHEN OTHERS THEN
                r := jsonb_build_object('code', 500, 'error', 'not applied: ' || SQLSTATE || ' ' || SQLERRM);
        END;
        results[i + 1] := r;
    END LOOP;
    RETURN to_jsonb(results);
END $$;

-- Several products in one event (a Shopify product's variants), each applied
-- as a product event; applied when any was newer than what is stored.
CREATE FUNCTION commerce.apply_products(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    x jsonb;
    applied int := 0;
BEGIN
    FOR x IN SELECT value FROM jsonb_array_elements(d->'products') LOOP
        IF commerce.apply_product(p, x)->>'result' = 'applied' THEN applied := applied + 1; END IF;
    END LOOP;
    IF applied = 0 THEN RETURN jsonb_build_object('code', 200, 'result', 'stale'); END IF;
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', '[]'::jsonb);
END $$;

CREATE OR REPLACE FUNCTION commerce.apply_event(e jsonb) RETURNS jsonb
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
        WHEN 'products' THEN RETURN commerce.apply_products(p, d);
        WHEN 'stock' THEN RETURN commerce.apply_stock(p, d);
        WHEN 'payment' THEN RETURN commerce.apply_payment(p, d);
        WHEN 'shipment' THEN RETURN commerce.apply_shipment(p, d);
        ELSE RAISE EXCEPTION USING ERRCODE = 'CC422', MESSAGE = format('unknown kind %s', e->>'kind');
    END CASE;
END $$;
