-- commerce: a Shopify product's update that no longer lists a variant
-- (deleted in the shop) marks that variant's product row discontinued, so a
-- caller is not offered what the shop no longer sells; its orders keep it.
CREATE OR REPLACE FUNCTION commerce.apply_products(p text, d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    x jsonb;
    applied int := 0;
BEGIN
    FOR x IN SELECT value FROM jsonb_array_elements(d->'products') LOOP
        IF commerce.apply_product(p, x)->>'result' = 'applied' THEN applied := applied + 1; END IF;
    END LOOP;
    IF applied = 0 THEN RETURN jsonb_build_object('code', 200, 'result', 'stale'); END IF;
    UPDATE commerce.products k SET status = 'discontinued', version = greatest(k.version, v.version), updated_at = now()
      FROM (SELECT max((j->>'version')::bigint) AS version FROM jsonb_array_elements(d->'products') j) v
     WHERE k.platform = p AND k.specification->>'product_id' = d->>'id' AND k.status <> 'discontinued'
       AND k.version < v.version
       AND k.code NOT IN (SELECT j->>'code' FROM jsonb_array_elements(d->'products') j);
    RETURN jsonb_build_object('code', 200, 'result', 'applied', 'events', '[]'::jsonb);
END $$;

-- A product's variants, found by the platform's product id.
CREATE INDEX products_platform_product ON commerce.products (platform, (specification->>'product_id'))
    WHERE specification ? 'product_id';
