-- commerce: an event that lost a deadlock or a lock wait to another writer
-- (two order-sync writers or instances touching the same customer) is
-- answered 503, so that the platform delivers it again, instead of 500.
CREATE OR REPLACE FUNCTION commerce.apply_batch(events jsonb) RETURNS jsonb
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
            WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
                r := jsonb_build_object('code', 503, 'error', 'busy with the same records; deliver again');
            WHEN OTHERS THEN
                r := jsonb_build_object('code', 500, 'error', 'not applied: ' || SQLSTATE || ' ' || SQLERRM);
        END;
        results := results || r;
    END LOOP;
    RETURN to_jsonb(results);
END $$;
