-- commerce: the batch's set-wise path for new orders (0009, 0020) taken
-- again: 0020's variable for a customer's key had the name of a column of
-- the path's selection query ("cust"), so PostgreSQL refused the query as
-- ambiguous, the path was undone every time and every new order went one by
-- one (about four times the database time per order). The same function with
-- the variable renamed.
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
    ckey text;
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
                ckey := (e->>'platform') || '/' || (e->'data'->'customer'->>'id');
                IF ckey IS NOT NULL AND told ? ckey THEN
                    evs := evs || jsonb_build_array(commerce.customer_event((told->>ckey)::bigint));
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
