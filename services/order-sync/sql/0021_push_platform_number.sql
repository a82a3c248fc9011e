-- commerce: a push about an order names it by the number its platform knows
-- (platform_number, 0020): for an order whose number another shop held
-- first ("1001@beta" here), data.order_number of the body becomes "1001".
-- A trigger, so that whichever migration builds the bodies
-- (commerce.order_push_body and its successors) the rule holds.
CREATE FUNCTION commerce.outbox_platform_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    pn text;
    b jsonb;
BEGIN
    SELECT platform_number INTO pn FROM commerce.orders
     WHERE order_number = NEW.subject AND platform = NEW.platform AND platform_number <> order_number;
    IF FOUND THEN
        b := NEW.body::jsonb;
        IF b->'data'->>'order_number' = NEW.subject THEN
            NEW.body := jsonb_set(b, '{data,order_number}', to_jsonb(pn))::text;
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER outbox_platform_number BEFORE INSERT ON commerce.outbox
    FOR EACH ROW EXECUTE FUNCTION commerce.outbox_platform_number();
